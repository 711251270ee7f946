"""Build the benchmark's model: a randomly initialised Llama and a locally trained tokenizer.

The GPU machines have no internet and no model weights, so the served model is made from a
config: its answers are gibberish, its timings are real. Generation length is fixed in the
saved ``generation_config.json`` (EOS disabled, greedy), so every request with
``max_tokens=L`` generates exactly ``L`` tokens whatever client sends it.

Run ``python -m benchmarks.gpu.model --out /tmp/llama-0.9b`` (add ``--tiny`` for a CPU smoke
test); it needs ``torch``, ``transformers`` and ``tokenizers``.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["CHAT_TEMPLATE", "ModelSpec", "build", "main"]

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{m['role']}}|>\n{{m['content']}}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
"""A minimal chat template; roles become ``<|role|>`` markers."""

_SPECIAL = ["<unk>", "<s>", "</s>", "<pad>"]  # ids 0..3: bos 1, eos 2, pad 3


@dataclass(frozen=True)
class ModelSpec:
    """The served model's shape. The default is a ~0.9B-parameter Llama (bf16 on a GPU)."""

    hidden_size: int = 2048
    intermediate_size: int = 5632
    num_hidden_layers: int = 16
    num_attention_heads: int = 16
    num_key_value_heads: int = 8
    vocab_size: int = 32000
    max_position_embeddings: int = 8192
    dtype: str = "bfloat16"

    @classmethod
    def tiny(cls) -> ModelSpec:
        """A model small enough to serve on a CPU (for smoke tests of the scripts)."""
        return cls(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=2000,
            max_position_embeddings=8192,
            dtype="float32",
        )


def _corpus(words: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["".join(rng.choices(letters, k=rng.randint(2, 9))) for _ in range(20000)]
    lines = []
    for _ in range(words // 12):
        lines.append(" ".join(rng.choices(vocab, k=12)))
    return lines


def build_tokenizer(vocab_size: int, out: Path, *, seed: int = 0) -> Any:
    """Train a byte-level BPE tokenizer on random words and save it with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=_SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(400_000, seed), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)
    return fast


def build(out: Path, spec: ModelSpec, *, device: str = "auto", seed: int = 0) -> dict[str, Any]:
    """Write a random-weight Llama, its tokenizer and a fixed-length generation config to
    ``out``; return what was built (for the results file)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(spec.vocab_size, out, seed=seed)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    config = LlamaConfig(
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        vocab_size=len(tokenizer),
        max_position_embeddings=spec.max_position_embeddings,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    with torch.device(device):
        model = LlamaForCausalLM(config)
    model = model.to(getattr(torch, spec.dtype))
    params = sum(p.numel() for p in model.parameters())
    # Fixed-length answers: EOS can never be produced (id -1), decoding is greedy, and the
    # server applies each request's max_tokens on top of this.
    model.generation_config = GenerationConfig(
        bos_token_id=1, eos_token_id=-1, pad_token_id=3, do_sample=False, max_new_tokens=128
    )
    model.save_pretrained(out)
    return {
        "path": str(out),
        "spec": asdict(spec),
        "parameters": params,
        "vocab_size": len(tokenizer),
        "device": device,
        "build_s": round(time.perf_counter() - started, 2),
    }


def main(argv: list[str] | None = None) -> None:
    """Command line: build the model directory and print a JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory to write")
    parser.add_argument("--tiny", action="store_true", help="a tiny CPU model for smoke tests")
    parser.add_argument("--device", default="auto", help="where to build it (auto, cuda, cpu)")
    args = parser.parse_args(argv)
    spec = ModelSpec.tiny() if args.tiny else ModelSpec()
    print(json.dumps(build(args.out, spec, device=args.device)))


if __name__ == "__main__":
    main()
