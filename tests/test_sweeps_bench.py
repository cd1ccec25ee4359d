import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_sweeps_times_both_executors_and_checks_equal_results(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_sweeps", ROOT / "bench" / "bench_sweeps.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    sweep = tmp_path / "b.toml"
    sweep.write_text('name = "b"\nseeds = 2\n[base]\nmodel = "mlp"\ndataset = "digits"\nsteps = 10\n'
                     'batch_size = 16\neval_every = 5\nmodel_kwargs = { hidden = [8] }\n'
                     '[axes]\nnorm = ["none", "bn"]\n')
    report = bench.main(["--sweep", str(sweep), "--workers", "2"])
    assert report["trials"] == 4 and report["identical"] is True
    assert report["local_s"] > 0 and report["process_s"] > 0
    assert report["ratio"] == report["local_s"] / report["process_s"]
    assert "speed-up local/process" in capsys.readouterr().out
