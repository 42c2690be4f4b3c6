"""qgan_jax.io.files: a target file is replaced whole or left as it was."""

import numpy as np
import pytest

from qgan_jax.io import files


def test_atomic_path_replaces_the_target_on_success(tmp_path):
    target = tmp_path / "sub" / "stats.npz"
    with files.atomic_path(target, suffix=".npz") as temporary:
        assert temporary.parent == target.parent and temporary.suffix == ".npz"
        np.savez(temporary, x=np.arange(3))
        assert not target.exists()
    np.testing.assert_array_equal(np.load(target)["x"], np.arange(3))
    assert sorted(p.name for p in target.parent.iterdir()) == ["stats.npz"]


def test_atomic_path_leaves_the_target_and_no_temporary_on_failure(tmp_path):
    target = tmp_path / "metrics.jsonl"
    files.write_bytes(target, b"old\n")
    with pytest.raises(RuntimeError, match="disk full"):
        with files.atomic_path(target) as temporary:
            temporary.write_bytes(b"half")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]
