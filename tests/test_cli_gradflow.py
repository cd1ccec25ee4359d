"""`bnlab gradflow`: a per-layer table and the fitted growth factor; bad input is a one-line error, exit 2."""

import re

from bnlab.cli import main


def test_gradflow_prints_a_row_per_weight_layer_and_the_growth_factor(capsys):
    assert main(["gradflow", "--depth", "4", "--width", "16", "--batch-size", "32", "--probes", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("blocks.") == 4 and "stem" in out and "head" in out
    growth = float(re.search(r"growth factor per layer \(towards the input\): ([0-9.]+)", out).group(1))
    assert 0.5 < growth < 3.0


def test_gradflow_bad_input_exits_2(capsys):
    assert main(["gradflow", "--activation", "swish"]) == 2
    assert main(["gradflow", "--batch-size", "1"]) == 2
    assert main(["gradflow", "--probes", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 3 and "Traceback" not in err
