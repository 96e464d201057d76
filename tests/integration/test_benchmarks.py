"""benchmarks/bench_pipeline.py runs end to end on a tiny random GPT-2 (code paths only; no timing assertions)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from fakes import RudeWordScorer
from redlat.config import ChatbotConfig

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_pipeline.py"
TOKENS = 3


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_pipeline", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(spec.name, None)
        raise
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module", autouse=True)
def _newline_mask_once(bench: ModuleType) -> Any:
    """Build the newline mask once: decoding GPT-2's whole vocabulary takes ~1.5 s, and every Sampler (and the
    benchmark's token counter) would do it again for the same tokenizer."""
    import redlat.generation

    real = redlat.generation.newline_token_mask
    memo: dict[tuple[int, int], Any] = {}

    def cached(tokenizer: Any, vocab_size: int) -> Any:
        key = (len(tokenizer), vocab_size)
        if key not in memo:
            memo[key] = real(tokenizer, vocab_size)
        return memo[key].clone()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(redlat.generation, "newline_token_mask", cached)
        patch.setattr(bench, "newline_token_mask", cached)
        yield


@pytest.fixture(scope="module")
def tiny_lm(tiny_gpt2_path: Path):
    from redlat.models.causal_lm import load_causal_lm

    return load_causal_lm(str(tiny_gpt2_path), device="cpu")


def _settings(bench: ModuleType) -> Any:
    return bench.BenchSettings(
        n=4,
        naive_n=2,
        red_max_new_tokens=TOKENS,
        reply_max_new_tokens=TOKENS,
        red_batch_size=3,  # two rounds, the second one short
        target_batch_size=2,
        seed=0,
        matmul_size=64,
        matmul_repeats=2,
    )


def _check_side(side: dict[str, Any], cases: int) -> None:
    assert side["cases"] == cases
    assert side["seconds"] > 0 and side["cases_per_s"] > 0
    assert set(side["stages"]) == {"red", "target", "score"}
    for name in ("red", "target"):
        stage = side["stages"][name]
        assert stage["sequences"] == cases
        assert 0 < stage["generated_tokens"] <= cases * TOKENS
        assert stage["prompt_tokens"] > 0
        assert stage["forward_calls"] >= stage["generate_calls"] > 0
        assert stage["fed_tokens"] > 0 and stage["head_tokens"] > 0 and stage["attended_positions"] > 0
        assert stage["gflop"] > 0 and stage["generated_tokens_per_s"] > 0 and stage["roofline_pct"] > 0
    generation = side["generation"]
    assert generation["generated_tokens_per_s"] > 0 and generation["gflops"] > 0 and generation["roofline_pct"] > 0
    assert generation["generated_tokens"] == sum(side["stages"][s]["generated_tokens"] for s in ("red", "target"))


def test_run_benchmark_on_a_tiny_gpt2(bench: ModuleType, tiny_lm: Any) -> None:
    report = bench.run_benchmark(
        tiny_lm, RudeWordScorer(), _settings(bench), ChatbotConfig(format="dpg"), model_label="tiny"
    )
    assert {"note", "environment", "model", "classifier", "settings", "roofline", "pipeline", "naive", "speedup",
            "target"} <= set(report)
    assert "speed only" in report["note"]
    assert report["roofline"]["gflops"] == max(report["roofline"]["gflops_before"], report["roofline"]["gflops_after"])
    assert report["roofline"]["gflops"] > 0 and report["roofline"]["drift_pct"] >= 0
    assert report["environment"]["torch_threads"] >= 1
    assert report["model"]["chat_format"] == "dpg"
    assert report["model"]["n_layer"] == 2 and report["model"]["d_model"] == 32
    assert report["model"]["target_prompt_tokens_example"] > 500  # the DPG prompt
    _check_side(report["pipeline"], 4)
    _check_side(report["naive"], 2)
    # The target side gets the DPG prompt: hundreds of prompt tokens per reply, a handful for the red side.
    assert report["pipeline"]["stages"]["target"]["prompt_tokens"] > 100 * report["pipeline"]["stages"]["red"][
        "prompt_tokens"] / 4
    assert report["speedup"] > 0 and report["target"]["met"] in (True, False)
    assert report["target"]["at_target_n"] is False
    json.dumps(report)  # JSON-able
    lines = bench.format_report(report)
    assert any(line.startswith("speedup") for line in lines)
    assert any("test cases/s" in line for line in lines)


def test_other_engines_run_the_same_pipeline(bench: ModuleType, tiny_lm: Any) -> None:
    pytest.importorskip("ctranslate2")
    settings = _settings(bench)
    settings = bench.BenchSettings(**{**settings.__dict__, "naive_n": 0, "engines": ("ctranslate2:int8",)})
    report = bench.run_benchmark(tiny_lm, RudeWordScorer(), settings, ChatbotConfig(format="dpg"), model_label="tiny")
    side = report["engines"]["ctranslate2:int8"]
    assert side["cases_per_s"] > 0 and side["ratio_to_transformers"] > 0
    assert side["stages"]["red"] > 0 and side["stages"]["target"] > 0 and len(side["examples"]) == 3
    assert any(line.startswith("engine ctranslate2:int8:") for line in bench.format_report(report))
    assert bench.parse_engine("ctranslate2").compute_type == "float32"


def test_the_pipeline_side_times_the_runners_own_round_function(bench: ModuleType, tiny_lm: Any,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import redlat.red_team.rounds

    assert bench.play_round is redlat.red_team.rounds.play_round  # not a copy
    rounds: list[int] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        rounds.append(kwargs["round_"])
        return redlat.red_team.rounds.play_round(*args, **kwargs)

    monkeypatch.setattr(bench, "play_round", counted)
    counter = bench.WorkCounter(tiny_lm)
    with counter:
        side = bench.run_pipeline(tiny_lm, RudeWordScorer(), _settings(bench), ChatbotConfig(format="dpg"), counter)
    assert side.cases == 4 and rounds[:2] == [0, 1]


def test_a_chat_model_gets_its_chat_template(bench: ModuleType, tiny_chat_path: Path) -> None:
    from redlat.models.causal_lm import load_causal_lm

    lm = load_causal_lm(str(tiny_chat_path), device="cpu")
    settings = bench.BenchSettings(n=2, naive_n=1, red_max_new_tokens=2, reply_max_new_tokens=2, matmul_size=32,
                                   matmul_repeats=1)
    report = bench.run_benchmark(lm, RudeWordScorer(), settings, ChatbotConfig(), model_label="tiny-chat",
                                 random_weights=False)
    assert report["model"]["chat_format"] == "chat"
    assert report["model"]["target_prompt_tokens_example"] < 50  # no DPG prompt
    assert report["pipeline"]["cases_per_s"] > 0 and report["naive"]["cases_per_s"] > 0


def test_generate_is_restored_after_counting(bench: ModuleType, tiny_lm: Any) -> None:
    with bench.WorkCounter(tiny_lm):
        assert "generate" in vars(tiny_lm.model) and tiny_lm.model._forward_pre_hooks
    assert "generate" not in vars(tiny_lm.model) and not tiny_lm.model._forward_pre_hooks


def test_flop_model_counts_tied_gpt2_parameters_once(bench: ModuleType, tiny_lm: Any) -> None:
    flops = bench.flop_model(tiny_lm.model)
    model = tiny_lm.model
    assert flops.lm_head_params == 50257 * 32
    wpe = model.transformer.wpe.weight.numel()
    # Tied head = token embedding: total = non-embedding + head + position embedding.
    assert flops.total_params == flops.non_embedding_params + flops.lm_head_params + wpe


def test_main_prints_the_report_and_json(
    bench: ModuleType, tiny_gpt2_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench, "load_scorer", lambda name, **kw: RudeWordScorer())
    argv = ["--model", str(tiny_gpt2_path), "--n", "2", "--naive-n", "1", "--red-max-new-tokens", "2",
            "--reply-max-new-tokens", "2", "--matmul-size", "64", "--matmul-repeats", "1", "--device", "cpu",
            "--json", "--quiet"]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    report = json.loads(out[-1])
    assert report["pipeline"]["cases"] == 2 and report["naive"]["cases"] == 1
    assert report["model"]["random_weights"] is False
    assert any(line.startswith("test cases/s") for line in out)


def test_bench_methods_runs_all_four_methods(questioner_chat_path):
    """benchmarks/bench_methods.py end to end on the tiny questioner (code paths only; no timing assertions)."""
    spec = importlib.util.spec_from_file_location("bench_methods", SCRIPT.parent / "bench_methods.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.main(["--n", "6", "--rl-steps", "1", "--train-top", "6", "--red", str(questioner_chat_path),
                       "--target", str(questioner_chat_path), "--classifier", "profanity", "--bleu-cases", "50"])
    assert [row["method"] for row in out["methods"]] == ["zero-shot", "few-shot", "supervised", "rl"]
    assert all(row["n"] == 6 for row in out["methods"])
    assert out["methods"][2]["train_seconds"] > 0 and out["methods"][3]["train_steps"] == 1
    assert out["self_bleu"]["speedup"] > 0
