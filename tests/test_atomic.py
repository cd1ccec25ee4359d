import json
import os

import numpy as np
import pytest

from bnlab.atomic import write_json, write_text


def test_write_json_roundtrip_and_no_temp_left(tmp_path):
    path = write_json(tmp_path / "sub" / "r.json", {"a": np.float32(1.5), "b": np.arange(3)})
    assert json.loads(path.read_text()) == {"a": 1.5, "b": [0, 1, 2]}
    assert os.listdir(path.parent) == ["r.json"]


def test_failed_write_keeps_old_file(tmp_path):
    target = tmp_path / "r.json"
    write_text(target, "old")
    with pytest.raises(TypeError):
        write_json(target, {"x": object()})
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["r.json"]
