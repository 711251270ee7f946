"""A preset's ``adaptive`` and ``consensus`` settings through ``polyfuse serve`` (the official
``openai`` client) and ``polyfuse distill`` (records carry the sampling and the saved usage)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import openai

from polyfuse.presets import load_config
from polyfuse.server import create_app
from polyfuse.server.protocol import protocol_for
from polyfuse.testing import FakeOpenAIServer, Fault, serve


def _presets(path: Path, url: str, *, extra: str = "") -> Path:
    path.write_text(
        f'[endpoints.m]\nbase_url = "{url}"\nmodel = "fake-model"\nmax_retries = 0\n'
        f'[endpoints.fusor]\nbase_url = "{url}"\nmodel = "fusor-model"\nmax_retries = 0\n\n'
        '[presets.cheap]\npool = ["m"]\nn = 8\nfusor = "fusor"\nanswer_extract = "last_number"\n'
        "adaptive = { first = 3, confidence = 0.8 }\n"
        '\n[presets.full]\npool = ["m"]\nn = 8\nfusor = "fusor"\n'
        "\n[server]\nallow_return_candidates = true\n" + extra,
        encoding="utf-8",
    )
    return path


def _responder(answers: dict[str, str]) -> Any:
    """Candidates answer ``answers[question]`` (by the question's last word; ``a|b`` takes
    turns over the samples of that question); the fusor fuses."""
    seen: dict[str, int] = {}

    def respond(body: dict[str, Any], index: int) -> str:
        if body["model"] == "fusor-model":
            return "Fused: 5"
        key = str(body["messages"][-1]["content"]).split()[-1]
        turns = answers[key].split("|")
        seen[key] = seen.get(key, -1) + 1
        return turns[seen[key] % len(turns)]

    return respond


def _calls(fake: FakeOpenAIServer, model: str) -> tuple[int, int]:
    """(requests, samples asked for) to ``model``."""
    bodies = [b for b in fake.requests if b.get("model") == model]
    return len(bodies), sum(int(b.get("n") or 1) for b in bodies)


def test_serve_a_preset_with_adaptive_sampling(
    fake: FakeOpenAIServer, fake_url: str, tmp_path: Path
) -> None:
    fake.responder = _responder({"agree": "It is 5.", "split": "It is 5.|It is 6."})
    app = create_app(load_config(_presets(tmp_path / "presets.toml", fake_url)))
    protocol: Any = protocol_for(app.state.settings)
    with serve(app, lifespan="on", http=protocol) as served:
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{served.port}/v1", api_key="unused", max_retries=0
        )
        full = client.chat.completions.create(
            model="full", messages=[{"role": "user", "content": "What is 2+3? agree"}]
        )
        assert _calls(fake, "fake-model")[1] == 8 and _calls(fake, "fusor-model")[0] == 1
        fake.reset()
        cheap = client.chat.completions.create(
            model="cheap",
            messages=[{"role": "user", "content": "What is 2+3? agree"}],
            extra_body={"polyfuse": {"return_candidates": True}},
        )
        # three samples agreed: no more rounds, no fusor call
        assert _calls(fake, "fake-model")[1] == 3 and _calls(fake, "fusor-model")[0] == 0
        assert cheap.choices[0].message.content == "It is 5."
        assert cheap.usage is not None and full.usage is not None
        assert cheap.usage.total_tokens < full.usage.total_tokens
        extension = (cheap.model_extra or {})["polyfuse"]
        assert extension["sampling"]["samples_used"] == 3
        assert extension["sampling"]["stop_reason"] == "settled"
        assert extension["usage"]["saved"]["calls"] == 6  # 5 samples + the fusor
        assert extension["usage"]["saved"]["total_tokens"] > 0
        assert "consensus shortcut" in extension["notes"][0]
        fake.reset()
        fake.responder = _responder({"split": "It is 5.|It is 6."})
        split = client.chat.completions.create(
            model="cheap", messages=[{"role": "user", "content": "What is 2+3? split"}]
        )
        # answers alternate 5, 6, 5, 6...: never settled, all 8 drawn, then the fusor
        assert _calls(fake, "fake-model")[1] == 8 and _calls(fake, "fusor-model")[0] == 1
        assert split.choices[0].message.content == "Fused: 5"
        health = httpx.get(f"http://127.0.0.1:{served.port}/health", timeout=10)
        assert health.status_code == 200


def _distill(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYFUSE_API")}
    env.update({"COLUMNS": "200", "NO_COLOR": "1"})
    return subprocess.run(
        [sys.executable, "-m", "polyfuse.cli", "distill", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_distill_a_preset_with_adaptive_sampling(
    fake: FakeOpenAIServer, fake_url: str, tmp_path: Path
) -> None:
    fake.responder = _responder({"agree": "It is 5.", "split": "It is 5.|It is 6."})
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        json.dumps({"prompt": "What is 2+3? agree"})
        + "\n"
        + json.dumps({"prompt": "What is 2+3? split"})
        + "\n",
        encoding="utf-8",
    )
    config = _presets(tmp_path / "presets.toml", fake_url)
    out = tmp_path / "out.jsonl"
    run = _distill(str(prompts), "-o", str(out), "-c", str(config), "-p", "cheap", "--no-progress")
    assert run.returncode == 0, run.stderr
    records = {
        json.loads(line)["messages"][0]["content"]: json.loads(line)
        for line in out.read_text(encoding="utf-8").splitlines()
    }
    agree = records["What is 2+3? agree"]["provenance"]
    assert len(agree["teachers"]) == 3
    assert agree["sampling"]["samples_used"] == 3 and agree["sampling"]["max_samples"] == 8
    assert agree["aggregations"]["fuse"]["calls"] == []
    assert agree["usage"]["aggregator"]["calls"] == 0
    assert agree["usage"]["saved"]["calls"] == 6 and agree["usage"]["saved"]["total_tokens"] > 0
    assert records["What is 2+3? agree"]["messages"][-1]["content"] == "It is 5."
    split = records["What is 2+3? split"]["provenance"]
    assert len(split["teachers"]) == 8 and split["sampling"]["stop_reason"] == "exhausted"
    assert split["usage"]["aggregator"]["calls"] == 1 and split["usage"]["saved"]["calls"] == 0
    assert records["What is 2+3? split"]["messages"][-1]["content"] == "Fused: 5"
    # the full preset samples all 8 and records no sampling
    full_out = tmp_path / "full.jsonl"
    run = _distill(
        str(prompts), "-o", str(full_out), "-c", str(config), "-p", "full", "--no-progress"
    )
    assert run.returncode == 0, run.stderr
    for line in full_out.read_text(encoding="utf-8").splitlines():
        provenance = json.loads(line)["provenance"]
        assert len(provenance["teachers"]) == 8 and "sampling" not in provenance
        assert provenance["usage"]["saved"]["calls"] == 0


def test_distill_flags_turn_adaptive_sampling_on(
    fake: FakeOpenAIServer, fake_url: str, tmp_path: Path
) -> None:
    fake.responder = _responder({"agree": "It is 5."})
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "What is 2+3? agree"}) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    run = _distill(
        str(prompts), "-o", str(out), "-t", f"fake-model@{fake_url}",
        "--fusor", f"fusor-model@{fake_url}", "--n", "8", "--adaptive-first", "2",
        "--answer-extract", "last_number", "--no-progress",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    provenance = json.loads(out.read_text(encoding="utf-8"))["provenance"]
    # 2-0 gives P(majority) = 0.875 >= 0.8: two samples, and the fusor skipped
    assert provenance["sampling"]["rounds"] == [2] and len(provenance["teachers"]) == 2
    assert provenance["usage"]["saved"]["calls"] == 7
    bad = _distill(
        str(prompts), "-o", str(tmp_path / "bad.jsonl"), "-t", f"fake-model@{fake_url}",
        "--adaptive-confidence", "2", "--no-progress",
    )  # fmt: skip
    assert bad.returncode == 2 and "adaptive.confidence" in bad.stderr


def test_serve_a_preset_with_hedging_to_a_fallback(
    make_fake: Any, fake_url: str, tmp_path: Path
) -> None:
    fake: FakeOpenAIServer = make_fake(responder=lambda body, index: f"{body['model']}: 5")
    # the first request to fake-model stalls far longer than the test may take
    fake.inject(Fault("slow_first_byte", delay_s=60.0, match_model="fake-model"))
    extra = (
        f'[endpoints.backup]\nbase_url = "{fake_url}"\nmodel = "backup-model"\nmax_retries = 0\n'
        '[presets.snappy]\npool = ["m"]\nn = 1\nstrategy = "vote"\nvote_extract = "exact"\n'
        'hedge = { after = 0.3, budget = 1.0, fallback = "backup" }\n'
    )
    config = load_config(_presets(tmp_path / "presets.toml", fake_url, extra=extra))
    app = create_app(config)
    protocol: Any = protocol_for(app.state.settings)
    with serve(app, lifespan="on", http=protocol) as served:
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{served.port}/v1", api_key="unused", max_retries=0
        )
        reply = client.chat.completions.create(
            model="snappy",
            messages=[{"role": "user", "content": "What is 2+3?"}],
            extra_body={"polyfuse": {"return_candidates": True}},
        )
    assert reply.choices[0].message.content == "backup-model: 5"
    assert [body["model"] for body in fake.requests] == ["fake-model", "backup-model"]
    extension = (reply.model_extra or {})["polyfuse"]
    # both calls are counted: the cancelled straggler as a call without usage
    assert extension["usage"]["candidates"]["calls"] == 2
    assert extension["usage"]["candidates"]["calls_without_usage"] == 1
