"""``polyfuse route train|eval`` on generated logs."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from routing_helpers import PRICES, planted_records, query

from polyfuse.cli.app import run
from polyfuse.routing import load_router, write_routing_log


@pytest.fixture
def logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    monkeypatch.setenv("COLUMNS", "240")
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    write_routing_log(train, planted_records(40, seed=1), append=False)
    write_routing_log(test, planted_records(10, seed=2), append=False)
    prices = tmp_path / "prices.json"
    prices.write_text(
        json.dumps({m: {"input_price": p[0], "output_price": p[1]} for m, p in PRICES.items()})
    )
    return train, test, prices


def test_train_then_eval_beats_the_best_single_model(
    logs: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train, test, prices = logs
    out = tmp_path / "routers"
    cache = tmp_path / "cache.sqlite"
    code = run(
        [
            "route",
            "train",
            str(train),
            "--prices",
            str(prices),
            "--out",
            str(out),
            "--cache",
            str(cache),
            "--epochs",
            "30",
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert "routers trained on 80 queries × 3 models" in err
    assert "knn: validation on 12 held-out training queries" in err  # 15% of each task
    knn, mlp, mf = out / "router-knn.npz", out / "router-mlp.npz", out / "router-mf.npz"
    assert [load_router(f).kind for f in (knn, mlp, mf)] == ["knn", "mlp", "mf"]
    assert load_router(knn).calibration["validation"]["fit_queries"] == 68
    results, plot, markdown = tmp_path / "r.json", tmp_path / "r.png", tmp_path / "r.md"
    code = run(
        [
            "route",
            "eval",
            str(knn),
            str(mlp),
            str(mf),
            "--train",
            str(train),
            "--test",
            str(test),
            "--cache",
            str(cache),
            "--json",
            str(results),
            "--plot",
            str(plot),
            "--markdown",
            str(markdown),
            "--budget-share",
            "0.5",
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert "performance-first" in err and "oracle" in err and "mean score per task" in err
    assert "route ms (median)" in err
    data = json.loads(results.read_text())
    for name in ("router-knn", "router-mlp", "router-mf"):
        speed = data["speed"][name]
        assert speed["trained_queries"] == 80 and speed["queries"] == 20
        assert speed["route_median_ms"] > 0 and speed["calibration_seconds"] is not None
        perf = data["routers"][name][0]
        assert perf["scenario"] == "performance-first"
        assert perf["methods"]["router"]["score"] == 1.0  # the planted pattern, learned
        assert perf["methods"]["best single"]["score"] == 0.5
        assert perf["methods"]["oracle"]["score"] == 1.0
        within = perf["methods"]["router within budget"]
        assert within["picks"] == {"model-c": 20}  # a and b cost 10x: over half the budget
        cost_first = data["routers"][name][2]["methods"]["router"]
        assert cost_first["picks"] == {"model-c": 20}  # the cheap model
    assert plot.read_bytes()[:4] == b"\x89PNG"
    math_query = query("math", random.Random(11))
    assert run(["route", "show", str(knn), math_query, "--k", "2"]) == 0
    shown = capsys.readouterr()
    assert shown.out.split()[0] == "model-a" and len(shown.out.split()) == 2
    assert "predicted score" in shown.err and "task math" in shown.err
    # model-c is cheap and right on half of each task: within 0.9 of the best, it is taken.
    assert run(["route", "show", str(knn), math_query, "--tolerance", "0.9"]) == 0
    assert capsys.readouterr().out.split() == ["model-c"]
    assert run(["route", "show", str(knn), math_query, "--tolerance", "lots"]) == 2
    assert "--tolerance must be a number or 'calibrated'" in capsys.readouterr().err
    assert run(["route", "show", str(knn)]) == 0
    shown_err = capsys.readouterr().err
    assert "knn router, 3 models, 2 tasks" in shown_err
    assert "calibrated on 12 held-out training queries" in shown_err
    assert "| performance-first | router-knn | 1.0000 |" in markdown.read_text()


def test_bad_input_gets_one_clear_error(
    logs: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train, _, _ = logs
    assert run(["route", "train"]) == 2
    assert "give routing logs" in capsys.readouterr().err
    assert run(["route", "train", str(train), "--kind", "svm", "--out", str(tmp_path)]) == 2
    assert "unknown router kind 'svm'" in capsys.readouterr().err
    assert run(["route", "train", str(train), "--validation", "1.5", "--out", str(tmp_path)]) == 2
    assert "--validation must be in [0, 1)" in capsys.readouterr().err
    one = tmp_path / "one.jsonl"
    write_routing_log(one, [r for r in planted_records(3) if r.model == "model-a"], append=False)
    assert run(["route", "train", str(one), "--out", str(tmp_path)]) == 2
    assert "one model only (model-a)" in capsys.readouterr().err
    assert (
        run(
            [
                "route",
                "eval",
                str(tmp_path / "none.npz"),
                "--train",
                str(train),
                "--test",
                str(train),
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err


def test_llmrouter_folders_train_and_evaluate_with_estimated_costs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from routing_helpers import write_llmrouter

    monkeypatch.setenv("COLUMNS", "240")
    folder = tmp_path / "llmrouter"
    write_llmrouter(folder, "train")
    write_llmrouter(folder, "test")
    cache = str(tmp_path / "cache.sqlite")
    out = tmp_path / "routers"
    args = ["route", "train", "--llmrouter", str(folder), "--kind", "knn", "--out", str(out)]
    assert run([*args, "--cache", cache]) == 0, capsys.readouterr().err
    assert "too few to hold out 15% of each task" in capsys.readouterr().err
    assert load_router(out / "router-knn.npz").calibration == {}
    code = run(
        [
            "route",
            "eval",
            str(out / "router-knn.npz"),
            "--llmrouter",
            str(folder),
            "--cache",
            cache,
            "--output-tokens",
            "100",
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert "Costs are estimates" in err and "plus 100 output tokens" in err


def test_a_missing_routing_extra_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wordllama" else real(name)
    )
    assert run(["route", "train", "log.jsonl"]) == 2
    assert (
        "wordllama not installed: pip install '.[routing]' in a polyfuse checkout"
        in capsys.readouterr().err
    )
    assert run(["templates", "show", "t.jsonl"]) == 2
    assert ".[routing]" in capsys.readouterr().err
