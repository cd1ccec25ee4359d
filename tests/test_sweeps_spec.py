import json
import math
from pathlib import Path

import pytest

from bnlab.cli import main
from bnlab.config import config_hash
from bnlab.errors import BnlabError
from bnlab.sweeps.spec import TRIAL_FN, expand, load_sweep, parse_sweep
from bnlab.sweeps.trial import code_fingerprint
from bnlab.trials.train_trial import first_step_reaching, subsample_indices

ROOT = Path(__file__).resolve().parents[1]
TINY = {"name": "tiny", "seeds": 2, "curve_points": 4, "target_acc": 0.2, "best_over": "lr",
        "base": {"model": "mlp", "dataset": "digits", "steps": 12, "batch_size": 32, "eval_every": 4,
                 "model_kwargs": {"hidden": [16, 16]}},
        "axes": {"norm": ["none", "bn"], "lr": [0.1, 1e4]}}


def _toml(tmp_path, text, name="s.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_expand_gives_stable_ids_and_paired_seeds():
    sweep = parse_sweep(TINY)
    trials = expand(sweep)
    assert len(trials) == len(sweep) == 8
    assert [t.name for t in trials[:3]] == ["norm=none/lr=0.1/seed=0", "norm=none/lr=0.1/seed=1",
                                            "norm=none/lr=10000.0/seed=0"]
    first = trials[0]
    assert first.fn == TRIAL_FN and first.claim == "sweep"
    assert first.params["config"]["seed"] == 0 and first.params["config"]["progress"] is False
    assert first.params["config"]["model_kwargs"] == {"hidden": [16, 16]}
    assert first.key() == config_hash({"fn": TRIAL_FN, "params": dict(first.params), "data": None,
                                       "code": code_fingerprint(TRIAL_FN)})
    assert [t.key() for t in expand(parse_sweep(json.loads(json.dumps(TINY))))] == [t.key() for t in trials]
    assert len({t.key() for t in trials}) == 8
    # the same seed list for every point: BN and no-BN runs of replicate i share seed i
    assert {t.params["config"]["seed"] for t in trials if "norm=bn" in t.name} == {0, 1}


def test_dotted_axis_sets_one_entry_of_a_dict_field():
    data = {**TINY, "axes": {"model_kwargs.activation": ["sigmoid", "relu"]}, "best_over": None}
    trials = expand(parse_sweep(data))
    assert [t.params["config"]["model_kwargs"] for t in trials[::2]] == [
        {"hidden": [16, 16], "activation": "sigmoid"}, {"hidden": [16, 16], "activation": "relu"}]


@pytest.mark.parametrize("change, message", [
    ({"base": {"lrr": 0.1}}, "unknown config key 'sweep.base.lrr'"),
    ({"base": {"lr": "fast"}}, "config key 'sweep.base.lr' must be float"),
    ({"base": {"lr": -1.0}}, "sweep.base: lr must be a finite number > 0"),
    ({"base": {"steps": 0}}, "steps must be an integer >= 1"),
    ({"base": {"seed": 3}}, "sweep.base.seed"),
    ({"base": {"norm": "bn", "batch_size": 1}}, "batch_size 1 with norm 'bn'"),
    ({"axes": {"lrs": [0.1]}}, "unknown config key 'sweep.axes.lrs'"),
    ({"axes": {"lr": 0.1}}, "'sweep.axes.lr' must be a non-empty list"),
    ({"axes": {"lr": []}}, "'sweep.axes.lr' must be a non-empty list"),
    ({"axes": {"lr": [0.1, 0.1]}}, "'sweep.axes.lr' lists a value twice"),
    ({"axes": {"lr": [0.1, "x"]}}, "config key 'sweep.axes.lr' must be float"),
    ({"axes": {"norm": ["bn", "whitening"]}}, "unknown norm 'whitening'"),
    ({"axes": {"batch_size": [1, 8]}, "best_over": None}, "batch_size 1"),  # invalid only combined with bn
    ({"axes": {"seed": [1, 2]}, "best_over": None}, "sweep.axes.seed"),
    ({"axes": {"model_kwargs.a.b": [1]}, "best_over": None}, "dotted key"),
    ({"axes": {"model_kwargs.depth": [10, 50]}, "best_over": None}, "model 'mlp' has no option 'depth'"),
    ({"seeds": 0}, "sweep.seeds must be >= 1"),
    ({"seeds": [1, 1]}, "sweep.seeds must be distinct"),
    ({"seeds": "three"}, "config key 'sweep.seeds'"),
    ({"curve_points": 1}, "sweep.curve_points"),
    ({"target_acc": 1.5}, "sweep.target_acc"),
    ({"best_over": "momentum"}, "sweep.best_over must name an axis"),
    ({"name": "../evil"}, "sweep.name"),
    ({"colour": "red"}, "unknown config key 'sweep.colour'"),
])
def test_bad_sweeps_name_the_key(change, message):
    data = {**TINY, **change}
    if "axes" in change and "batch_size" in change["axes"]:
        data["axes"] = {"norm": ["none", "bn"], **change["axes"]}
    with pytest.raises(BnlabError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_sweep(data)


def test_load_sweep_file_errors(tmp_path):
    with pytest.raises(BnlabError, match="sweep file not found"):
        load_sweep(tmp_path / "missing.toml")
    with pytest.raises(BnlabError, match="malformed sweep file"):
        load_sweep(_toml(tmp_path, 'name = "x"\n[base\nlr = 1'))
    with pytest.raises(BnlabError, match="malformed sweep file"):
        load_sweep(_toml(tmp_path, 'name = "x"\n[base]\nlr = '))  # truncated
    with pytest.raises(BnlabError, match="cannot read sweep file"):
        load_sweep(tmp_path)
    sweep = load_sweep(_toml(tmp_path, "[base]\nsteps = 5\n", name="named-by-file.toml"))
    assert sweep.name == "named-by-file" and len(sweep) == 1


def test_set_overrides_values_of_the_file_and_is_validated_like_it(tmp_path):
    path = ROOT / "sweeps" / "c07_learning_rate.toml"
    full = load_sweep(path)
    short = load_sweep(path, ["base.steps=20", "seeds=1", "axes.lr=[0.1, 1.0]", "base.dataset=digits",
                              "base.model_kwargs.hidden=[8, 8]", "name=c07-short"])
    assert (len(full), len(short)) == (42, 4) and short.name == "c07-short" and short.seeds == (0,)
    assert short.base["steps"] == 20 and short.base["dataset"] == "digits"
    assert short.base["model_kwargs"] == {"hidden": [8, 8]} and dict(short.axes)["lr"] == (0.1, 1.0)
    assert dict(short.axes)["norm"] == ("none", "bn") and short.base["batch_size"] == 60  # the rest as in the file
    trial = expand(short)[0]
    assert trial.params["config"]["steps"] == 20 and trial.params["config"]["model_kwargs"] == {"hidden": [8, 8]}
    tiny = _toml(tmp_path, '[base]\nmodel = "deep_mlp"\n[axes]\nlr = [0.1]\n')
    assert dict(load_sweep(tiny, ["axes.model_kwargs.depth=[1, 2]"]).axes)["model_kwargs.depth"] == (1, 2)
    assert load_sweep(tiny, ["base.steps=5", "base.steps=7"]).base["steps"] == 7  # the last one wins
    for override, message in [("steps=20", "unknown sweep key 'steps'"), ("base.stepz=20", "sweep.base.stepz"),
                              ("base.steps=-1", "steps"), ("base.steps", "takes KEY=VALUE"), ("=1", "KEY=VALUE"),
                              ("axes.lr=[]", "sweep.axes.lr"), ("base=1", "name a field"), ("seeds=0", "seeds"),
                              ("seeds.x=1", "not a table"), ("base.steps.x=1", "not a table")]:
        with pytest.raises(BnlabError, match=message):
            load_sweep(path, [override])
    assert full == load_sweep(path)  # the file itself is untouched


def test_sweep_set_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["sweep", str(ROOT / "sweeps" / "c07_learning_rate.toml"), "--executor", "local", "--out", str(out),
                 "--quiet", "--set", "base.steps=4", "--set", "base.eval_every=2", "--set", "seeds=1",
                 "--set", "axes.lr=[0.1]", "--set", "base.dataset=digits"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert len(list((out / "trials").glob("*.json"))) == 2 and len(results["rows"]) == 2
    assert main(["sweep", str(ROOT / "sweeps" / "c07_learning_rate.toml"), "--set", "base.lr=fast",
                 "--out", str(tmp_path / "bad")]) == 2
    assert "sweep.base.lr" in capsys.readouterr().err and not (tmp_path / "bad").exists()


@pytest.mark.parametrize("path", sorted((ROOT / "sweeps").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_sweep_files_are_valid(path):
    sweep = load_sweep(path)
    trials = expand(sweep)
    assert len(trials) == len(sweep) >= 20
    assert sweep.claim in ("C07", "C10", "C13")
    assert all(t.params["config"]["device"] == "auto" for t in trials)


def test_subsample_and_steps_to_target_against_brute_force():
    assert subsample_indices(5, 10) == [0, 1, 2, 3, 4]
    for n, k in [(100, 7), (15000, 200), (11, 2), (12, 11)]:
        idx = subsample_indices(n, k)
        assert idx[0] == 0 and idx[-1] == n - 1 and len(idx) <= k and idx == sorted(set(idx))
        gaps = [b - a for a, b in zip(idx, idx[1:])]
        assert max(gaps) - min(gaps) <= 1  # evenly spread
    assert first_step_reaching([0, 10, 20, 30], [0.1, math.nan, 0.95, 0.99], 0.9) == 20
    assert first_step_reaching([0, 10], [0.1, 0.2], 0.9) is None


def test_cli_sweep_runs_resumes_and_reports(tmp_path, capsys):
    path = _toml(tmp_path, """
name = "tiny"
seeds = 2
curve_points = 4
target_acc = 0.2
best_over = "lr"
[base]
model = "mlp"
dataset = "digits"
steps = 12
batch_size = 32
eval_every = 4
model_kwargs = { hidden = [16, 16] }
[axes]
norm = ["none", "bn"]
lr = [0.1, 1e4]
""")
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--executor", "local", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("sweep tiny: 8 trials, executor local\n")
    assert "[8/8] ok" in captured.err and "diverged at step" in captured.err
    table = captured.out
    assert "norm  lr" in table and "best lr for norm=bn: 0.1" in table
    assert "2/2  0       2" in table  # lr 1e4: both seeds ran and both diverged -- a result, not a failure
    results = json.loads((out / "results.json").read_text())
    assert len(results["rows"]) == 4 and all(t["status"] == "ok" for t in results["trials"])
    diverged = [r for r in results["rows"] if r["point"]["lr"] == 1e4]
    assert all(r["diverged"] == 2 and r["test_acc"]["mean"] is None for r in diverged)
    record = json.loads(next((out / "trials").glob("*.json")).read_text())
    assert set(record["result"]) == {"final", "diverged_at_step", "device", "curves", "steps_to_target"}
    assert len(record["result"]["curves"]["train_loss"]) <= 4
    # the rerun computes nothing and prints the same table
    assert main(["sweep", str(path), "--executor", "local", "--out", str(out)]) == 0
    again = capsys.readouterr()
    assert "all 8 trials already in the store" in again.err and again.out == table


@pytest.mark.parametrize("args, message", [
    (["sweep", "nope.toml"], "sweep file not found"),
    (["sweep", "{tiny}", "--executor", "dask"], "unknown executor 'dask'"),
    (["sweep", "{tiny}", "--executor", "local", "--address", "auto"], "--address is for the ray executor"),
    (["sweep", "{tiny}", "--retries", "-1"], "retries must be a non-negative integer"),
    (["sweep", "{tiny}", "--workers", "0"], "workers must be a positive integer"),
    (["sweep", "{tiny}", "--out", "{file}"], "is a file"),
])
def test_cli_sweep_bad_input_is_one_line_exit_2(tmp_path, capsys, args, message):
    tiny = _toml(tmp_path, '[base]\nsteps = 2\n', name="tiny.toml")
    afile = _toml(tmp_path, "x", name="afile")
    args = [a.format(tiny=tiny, file=afile) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert afile.read_text() == "x"
