"""The docs harness itself: it finds every block, and it fails where a reader would."""

from __future__ import annotations

from pathlib import Path

import pytest
from docs_blocks import DirectiveError, collect, console_commands, shell_commands, split_chain
from docs_harness import (
    LOCAL_MAX_TOKENS,
    Outcome,
    PageRunner,
    cap_local_answers,
    check_output,
    substitute_urls,
)


def _page(tmp_path: Path, text: str) -> Path:
    page = tmp_path / "page.md"
    page.write_text(text, encoding="utf-8")
    return page


def _run(tmp_path: Path, text: str, url: str, env: dict[str, str]) -> list[Outcome]:
    page = _page(tmp_path, text)
    work = tmp_path / "work"
    work.mkdir()
    with PageRunner(work, url, env, timeout_s=120) as runner:
        return runner.run(collect(page))


def _failed(outcomes: list[Outcome]) -> list[str]:
    return [f"{o.where}\n{o.detail}" for o in outcomes if not o.ok]


# ------------------------------------------------------------------ collecting


def test_collect_finds_fences_directives_and_indented_blocks(tmp_path: Path) -> None:
    page = _page(
        tmp_path,
        "# T\n\n<!-- docs: skip needs a GPU; local-model -->\n```python\nx = 1\n```\n\n"
        "- item\n\n  <!-- docs: continue -->\n  ```py\n  y = x\n  ```\n\n"
        '<!-- docs: output-contains "a; b" "c" -->\n```\nout\n```\n\n~~~bash\necho hi\n~~~\n',
    )
    first, second, third, fourth = collect(page)
    assert (first.lang, first.line, first.source) == ("python", 5, "x = 1\n")
    assert first.directives.skip == "needs a GPU" and first.directives.local_model
    assert second.directives.cont and second.source == "y = x\n" and second.line == 12
    assert third.directives.contains == ("a; b", "c") and third.lang == ""
    assert fourth.lang == "bash" and fourth.is_shell


def test_unknown_directives_name_the_page_and_line(tmp_path: Path) -> None:
    page = _page(tmp_path, "text\n\n<!-- docs: skipp reason -->\n```python\npass\n```\n")
    with pytest.raises(DirectiveError, match=r"page.md:4: unknown docs directive 'skipp'"):
        collect(page)


def test_shell_lines_join_continuations_and_multiline_quotes() -> None:
    source = (
        "# a comment\npolyfuse ask \\\n    --n 3 'q'   # trailing\n\ncurl -d '{\n  \"a\": 1}'\n"
    )
    assert shell_commands(source) == [
        "polyfuse ask      --n 3 'q'   # trailing",
        "curl -d '{\n  \"a\": 1}'",
    ]
    assert split_chain('pip install ".[x]" && polyfuse ask "a && b"  # c && d') == [
        'pip install ".[x]"',
        'polyfuse ask "a && b"',
    ]
    assert console_commands("$ a\nout 1\nout 2\n$ b\n") == [("a", "out 1\nout 2"), ("b", "")]


def test_urls_point_at_the_harness_servers() -> None:
    text = (
        'E("http://gpu-a:8000/v1", "https://api.example.com/v1/chat") '
        "-e http://127.0.0.1:9/v1 http://127.0.0.1:8090/v1 http://10.0.0.1:8000/v1"
    )
    out = substitute_urls(text, "http://F/v1", "http://S/v1")
    assert out == (
        'E("http://F/v1", "http://F/v1/chat") -e http://127.0.0.1:9/v1 http://S/v1 http://F/v1'
    )
    assert check_output("a ... c\n  d", "a b b c d") and not check_output("a c", "a b c")


# ------------------------------------------------------------------ running


def test_embedded_model_answers_are_capped_in_code_bodies_and_commands() -> None:
    cap = LOCAL_MAX_TOKENS
    code = 'fusion.run(q, max_tokens=128)\nbody = {"max_tokens": 64, "n": 2}\nrun(max_tokens=4)'
    assert cap_local_answers(code, command=False) == (
        f'fusion.run(q, max_tokens={cap})\nbody = {{"max_tokens": {cap}, "n": 2}}\nrun(max_tokens=4)'
    )
    assert cap_local_answers('polyfuse ask "q" --json  # a --max-tokens note', command=True) == (
        f'polyfuse ask --max-tokens {cap} "q" --json  # a --max-tokens note'
    )
    assert cap_local_answers('echo "q" | polyfuse ask --max-tokens 64', command=True) == (
        f'echo "q" | polyfuse ask --max-tokens {cap}'
    )
    assert cap_local_answers('python examples/lcel_chain.py --local "q"', command=True) == (
        f'python examples/lcel_chain.py --max-tokens {cap} --local "q"'
    )
    remote = 'python examples/lcel_chain.py --base-url http://h/v1 "q"'
    assert cap_local_answers(remote, command=True) == remote  # not the embedded model


def test_a_good_page_passes(tmp_path: Path, docs_server_url: str, docs_env: dict[str, str]) -> None:
    text = """
<!-- docs: file data.txt -->
```
hello
```

```python
from pathlib import Path

from polyfuse import Fusion, OpenAIEndpoint, Pool

fusion = Fusion(Pool.repeat(OpenAIEndpoint("http://127.0.0.1:8000/v1", model="m"), 2))
print(Path("data.txt").read_text().strip(), fusion.run("Why?").content)
```

<!-- docs: output -->
```
hello Answer ...
```

<!-- docs: continue -->
```python
print(type(fusion).__name__)
```

<!-- docs: skip needs a GPU -->
```python
from polyfuse import Fusion

raise SystemExit("not run")
```

```bash
export MY_VAR=42
echo "$MY_VAR" && polyfuse ask "q" -e http://gpu1:8000/v1 -m m --json > out.json
```

```console
$ echo one two
one ...
```
"""
    outcomes = _run(tmp_path, text, docs_server_url, docs_env)
    assert _failed(outcomes) == []
    assert (tmp_path / "work" / "out.json").read_text().startswith("{")


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ("```python\nimport asyncio\nawait asyncio.sleep(0)\n```", "'await' outside function"),
        ("```python\nprint(FusedToken)\n```", "NameError: name 'FusedToken'"),
        (
            "<!-- docs: skip hosted API -->\n```python\nfrom polyfuse import Nope\n```",
            "cannot import name 'Nope'",
        ),
        ("<!-- docs: skip x -->\n```python\ndef f(:\n```", "SyntaxError"),
        ("```bash\nfalse\n```", "exit 1 (expected 0)"),
        ('```bash\npip install "polyfuse[local]"\n```', "polyfuse is not on the index"),
        ('```bash\npip install ".[nosuch]"\n```', "no extra 'nosuch'"),
        ("```bash\npython -m pytest tests/nowhere -m 'not gpu'\n```", "no such test path"),
        ("```bash\npython -m pytest tests/docs -m 'not gpu'\n```", "no marker 'gpu'"),
        ("<!-- docs: skip x -->\n```bash\npolyfuse ask --frobnicate q\n```", "--frobnicate"),
        ("```console\n$ echo one\ntwo\n```", "--- page:\ntwo"),
        ("```python\nprint(1)\n```\n\n<!-- docs: output -->\n```\n2\n```", "differs"),
        ("<!-- docs: output -->\n```\n2\n```", "no run block before it"),
    ],
)
def test_a_broken_block_fails_and_says_where(
    tmp_path: Path, docs_server_url: str, docs_env: dict[str, str], block: str, expected: str
) -> None:
    failures = _failed(_run(tmp_path, f"# Page\n\n{block}\n", docs_server_url, docs_env))
    assert len(failures) == 1, failures
    assert failures[0].startswith("page.md:") and expected in failures[0]


def test_a_background_server_is_started_and_stopped(
    tmp_path: Path, docs_server_url: str, docs_env: dict[str, str]
) -> None:
    config = tmp_path / "work" / "p.toml"
    config.parent.mkdir()
    config.write_text(
        f'[endpoints.e]\nbase_url = "{docs_server_url}"\nmodel = "m"\n'
        '[presets.fuse]\npool = ["e"]\nn = 2\n'
    )
    text = """
<!-- docs: background -->
```bash
polyfuse serve --config p.toml   # http://127.0.0.1:8090/v1
```

```python
from openai import OpenAI

client = OpenAI(base_url="http://127.0.0.1:8090/v1", api_key="unused")
reply = client.chat.completions.create(
    model="fusion/fuse", messages=[{"role": "user", "content": "Hi"}]
)
print(reply.choices[0].message.content)
```
"""
    page = _page(tmp_path, text)
    with PageRunner(tmp_path / "work", docs_server_url, docs_env, timeout_s=120) as runner:
        outcomes = runner.run(collect(page))
        served = runner.serve_url
    assert _failed(outcomes) == [] and served is not None and ":8090" not in served
