"""Tests for qgan_jax.io.torch_checkpoint: zip and legacy round trips (strided and shared storages,
all storage dtypes), the restricted unpickler refusing foreign globals without executing anything, and
malformed files. Files are written without torch; the torch cross-checks skip when torch is absent."""

import collections
import os
import pickle
import zipfile

import numpy as np
import pytest

from qgan_jax.io import torch_checkpoint as tc
from tests import torch_writer as tw
from tests.torch_writer import save_legacy


WRITERS = {"zip": tw.save_state_dict, "legacy": save_legacy}


def _sample_tree():
    rng = np.random.default_rng(0)
    base = np.arange(60, dtype=np.float32)
    shared = rng.standard_normal(12).astype(np.float64)
    sd = collections.OrderedDict()
    sd["conv.weight"] = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    sd["bn.num_batches_tracked"] = np.array(7, np.int64)
    sd["half"] = rng.standard_normal(5).astype(np.float16)
    sd["bf16"] = rng.standard_normal(6).astype(tc._bfloat16())
    sd["i32"] = np.arange(-3, 3, dtype=np.int32)
    sd["u8"] = np.arange(250, 256, dtype=np.uint8)
    sd["mask"] = np.array([True, False, True])
    sd["empty"] = np.zeros((0, 3), np.float32)
    # non-contiguous views: a transpose and a stepped slice of one storage, and two views sharing another
    sd["t"] = tw.TensorView(base, 0, (6, 10), (1, 6))
    sd["sl"] = tw.TensorView(base, 7, (3, 4), (20, 3))
    sd["a"] = tw.TensorView(shared, 0, (3, 4), (4, 1))
    sd["b"] = tw.TensorView(shared, 2, (5,), (2,))
    sd._metadata = collections.OrderedDict({"": {"version": 1}, "conv": {"version": 1}})
    tree = {"state_dict": sd, "epoch": 3, "name": "G", "hist": [np.ones(2, np.float32), 0.5, None],
            "G": {"fc": {"weight": np.eye(2, dtype=np.float32)}}}
    expected = {
        "state_dict.conv.weight": sd["conv.weight"], "state_dict.bn.num_batches_tracked": sd["bn.num_batches_tracked"],
        "state_dict.half": sd["half"], "state_dict.bf16": sd["bf16"], "state_dict.i32": sd["i32"],
        "state_dict.u8": sd["u8"], "state_dict.mask": sd["mask"], "state_dict.empty": sd["empty"],
        "state_dict.t": base.reshape(10, 6).T,
        "state_dict.sl": np.array([[base[7 + 20 * r + 3 * c] for c in range(4)] for r in range(3)]),
        "state_dict.a": shared.reshape(3, 4), "state_dict.b": shared[2::2][:5],
        "hist.0": np.ones(2, np.float32), "G.fc.weight": np.eye(2, dtype=np.float32),
    }
    return tree, expected


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_round_trip(tmp_path, fmt):
    tree, expected = _sample_tree()
    path = tmp_path / f"ck_{fmt}.pth"
    WRITERS[fmt](path, tree)
    with open(path, "rb") as f:
        assert f.read(2) == (b"PK" if fmt == "zip" else b"\x80\x02")
    got = tc.load(path)
    assert list(got) == list(expected)  # order preserved, non-tensor leaves and _metadata skipped
    for k, want in expected.items():
        assert got[k].dtype == want.dtype and got[k].shape == want.shape, k
        np.testing.assert_array_equal(got[k], want, err_msg=k)
        assert got[k].flags.c_contiguous and got[k].flags.owndata
    assert got["state_dict.bn.num_batches_tracked"].shape == ()


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_load_tree_keeps_plain_leaves(tmp_path, fmt):
    tree, _ = _sample_tree()
    WRITERS[fmt](tmp_path / "ck.pth", tree)
    out = tc.load_tree(tmp_path / "ck.pth")
    assert out["epoch"] == 3 and out["name"] == "G" and out["hist"][1:] == [0.5, None]
    assert isinstance(out["state_dict"], collections.OrderedDict)
    np.testing.assert_array_equal(out["state_dict"]["t"], np.arange(60, dtype=np.float32).reshape(10, 6).T)


def test_bare_tensor_and_big_endian_zip(tmp_path):
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    tw.save_state_dict(tmp_path / "t.pth", arr)
    np.testing.assert_array_equal(tc.load(tmp_path / "t.pth")[""], arr)
    # the same tensor written big-endian, as a big-endian machine would
    data, storages = tw._pickle_payload({"w": arr}, legacy=False)
    with zipfile.ZipFile(tmp_path / "be.pth", "w") as zf:
        zf.writestr("be/data.pkl", data)
        zf.writestr("be/byteorder", "big")
        zf.writestr("be/data/0", storages[0][1].astype(">f4").tobytes())
    np.testing.assert_array_equal(tc.load(tmp_path / "be.pth")["w"], arr)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _zip_with_pickle(path, payload: bytes):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", payload)


def _legacy_with_pickle(path, payload: bytes):
    with open(path, "wb") as f:
        pickle.dump(tc.LEGACY_MAGIC_NUMBER, f, protocol=2)
        pickle.dump(tc.LEGACY_PROTOCOL_VERSION, f, protocol=2)
        pickle.dump({"little_endian": True}, f, protocol=2)
        f.write(payload)
        pickle.dump([], f, protocol=2)


@pytest.mark.parametrize("container", [_zip_with_pickle, _legacy_with_pickle])
def test_refuses_os_system_and_executes_nothing(tmp_path, container):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"w": _Evil(marker)}, protocol=2)
    assert b"system" in payload
    container(tmp_path / "evil.pth", payload)
    with pytest.raises(tc.UnsafeCheckpointError, match=r"(posix|os)\.system") as info:
        tc.load(tmp_path / "evil.pth")
    assert isinstance(info.value, ValueError) and isinstance(info.value, pickle.UnpicklingError)
    assert not marker.exists()


@pytest.mark.parametrize("obj, name", [
    (eval, "eval"),
    (np.float64(1.0), "numpy"),  # numpy scalars reduce through numpy globals
    (collections.Counter(a=1), "collections.Counter"),
])
def test_refuses_other_globals(tmp_path, obj, name):
    _zip_with_pickle(tmp_path / "x.pth", pickle.dumps({"x": obj}, protocol=2))
    with pytest.raises(tc.UnsafeCheckpointError, match=name):
        tc.load(tmp_path / "x.pth")


class _Pid(pickle.Pickler):
    def __init__(self, f, pid):
        super().__init__(f, protocol=2)
        self.pid = pid

    def persistent_id(self, obj):
        return self.pid if obj == "PID" else None


def _pickle_with_pid(pid) -> bytes:
    import io

    buf = io.BytesIO()
    _Pid(buf, pid).dump({"x": "PID"})
    return buf.getvalue()


@pytest.mark.parametrize("pid, match", [
    (("module", "m", "src"), "'module'"),
    (("storage", "FloatStorage", "0", "cpu", 4), "torch.\\*Storage"),  # type given as a plain string
])
def test_refuses_bad_persistent_ids(tmp_path, pid, match):
    _zip_with_pickle(tmp_path / "p.pth", _pickle_with_pid(pid))
    with pytest.raises(tc.UnsafeCheckpointError, match=match):
        tc.load(tmp_path / "p.pth")


class _ViewPickler(tw._TorchPickler):
    def persistent_id(self, obj):
        pid = super().persistent_id(obj)
        return None if pid is None else pid[:5] + (("0", 0, 3),)


def test_refuses_legacy_storage_view(tmp_path):
    import io

    buf = io.BytesIO()
    _ViewPickler(buf, legacy=True).dump({"w": tw._Tensor(tw._Storage("0", np.ones(3, np.float32)), 0, (3,), (1,))})
    _legacy_with_pickle(tmp_path / "v.pth", buf.getvalue())
    with pytest.raises(tc.UnsafeCheckpointError, match="view"):
        tc.load(tmp_path / "v.pth")


def test_out_of_bounds_view_is_an_error(tmp_path):
    base = np.arange(10, dtype=np.float32)
    tw.save_state_dict(tmp_path / "oob.pth", {"w": tw.TensorView(base, 5, (3, 3), (3, 1))})
    with pytest.raises(ValueError, match="reaches element"):
        tc.load(tmp_path / "oob.pth")


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tc.load(tmp_path / "missing.pth")
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        tc.load(tmp_path / "text.pth")
    tw.save_state_dict(tmp_path / "ok.pth", {"w": np.ones(4, np.float32)})
    with zipfile.ZipFile(tmp_path / "ok.pth") as src, zipfile.ZipFile(tmp_path / "nodata.pth", "w") as dst:
        dst.writestr("archive/data.pkl", src.read("archive/data.pkl"))
    with pytest.raises(ValueError, match="missing"):
        tc.load(tmp_path / "nodata.pth")
    tw.save_state_dict(tmp_path / "clash.pth", {"a.b": np.ones(1, np.float32), "a": {"b": np.ones(1, np.float32)}})
    with pytest.raises(ValueError, match="collide"):
        tc.load(tmp_path / "clash.pth")


def test_writer_rejects_unknown_dtype(tmp_path):
    with pytest.raises(ValueError, match="dtype"):
        tw.save_state_dict(tmp_path / "s.pth", {"s": np.array(["a"])})


# ------------------------------------------------------------------ cross-checks with real torch (optional)


def _torch():
    return pytest.importorskip("torch", reason="torch is not installed; the torch-free tests above still run")


@pytest.mark.parametrize("legacy", [False, True])
def test_reads_files_written_by_torch(tmp_path, legacy):
    torch = _torch()
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    m = torch.nn.BatchNorm2d(3)
    obj = {"model": m.state_dict(), "t": base.t(), "sl": base[1:, ::2], "h": torch.ones(2).half(), "step": 5}
    path = tmp_path / "torch.pth"
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    got = tc.load(path)
    assert set(got) == {"model.weight", "model.bias", "model.running_mean", "model.running_var",
                        "model.num_batches_tracked", "t", "sl", "h"}
    np.testing.assert_array_equal(got["t"], base.t().numpy())
    np.testing.assert_array_equal(got["sl"], base[1:, ::2].numpy())
    assert got["model.num_batches_tracked"].dtype == np.int64


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_torch_reads_our_files(tmp_path, fmt):
    torch = _torch()
    tree, expected = _sample_tree()
    del tree["state_dict"]["bf16"], expected["state_dict.bf16"]  # bfloat16 has no numpy view in torch
    WRITERS[fmt](tmp_path / "ours.pth", tree)
    out = torch.load(tmp_path / "ours.pth", weights_only=True)
    np.testing.assert_array_equal(out["state_dict"]["t"].numpy(), expected["state_dict.t"])
    np.testing.assert_array_equal(out["state_dict"]["sl"].numpy(), expected["state_dict.sl"])
    assert out["epoch"] == 3


# Resource bounds (reliability drill 6): each crafted file is refused in one line, quickly, in little memory.


def _refused_quickly(path, match):
    import time

    start = time.perf_counter()
    with pytest.raises(ValueError, match=match) as info:
        tc.load_tree(path)
    assert time.perf_counter() - start < 5.0
    assert "\n" not in str(info.value)


def test_stride_zero_view_of_a_small_storage_is_refused(tmp_path):
    base = np.arange(4, dtype=np.float32)
    tw.save_state_dict(tmp_path / "broadcast.pth", {"w": tw.TensorView(base, 0, (30000, 25000), (0, 0))})
    _refused_quickly(tmp_path / "broadcast.pth", "more than its storage")


def test_views_shared_many_times_cannot_materialise_unbounded_memory(tmp_path):
    base = np.arange(1000, dtype=np.float32)
    tw.save_state_dict(tmp_path / "shared.pth", {f"w{i}": tw.TensorView(base, 0, (1000,), (1,)) for i in range(10)})
    _refused_quickly(tmp_path / "shared.pth", "materialise more than")


def test_shared_reference_dag_is_refused(tmp_path):
    level = [1]
    for _ in range(40):
        level = [level, level]
    payload = pickle.dumps({"x": level}, protocol=2)
    assert len(payload) < 2000
    _zip_with_pickle(tmp_path / "dag.pth", payload)
    _refused_quickly(tmp_path / "dag.pth", "more than 200000 nodes")


def test_self_reference_and_deep_nesting_are_refused(tmp_path):
    loop = []
    loop.append(loop)
    _zip_with_pickle(tmp_path / "loop.pth", pickle.dumps({"x": loop}, protocol=2))
    _refused_quickly(tmp_path / "loop.pth", "cycle")
    depth = 100_000   # EMPTY_LIST x depth, then APPEND x (depth - 1): each list inside the previous one.
    _zip_with_pickle(tmp_path / "deep.pth", b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b".")
    _refused_quickly(tmp_path / "deep.pth", "nest deeper than")


def test_zip_bomb_is_refused_before_decompression(tmp_path):
    tw.save_state_dict(tmp_path / "ok.pth", {"w": np.ones(4, np.float32)})
    with zipfile.ZipFile(tmp_path / "ok.pth") as src:
        names = src.namelist()
        (storage,) = [n for n in names if "/data/" in n]
        with zipfile.ZipFile(tmp_path / "bomb.pth", "w", zipfile.ZIP_DEFLATED) as dst:
            for name in names:
                dst.writestr(name, b"\0" * (200 * 2 ** 20) if name == storage else src.read(name))
    assert (tmp_path / "bomb.pth").stat().st_size < 2 * 2 ** 20
    _refused_quickly(tmp_path / "bomb.pth", "declares 209715200 bytes uncompressed")


def test_garbage_after_a_zip_header_is_a_one_line_error(tmp_path):
    (tmp_path / "garbage.pth").write_bytes(b"PK\x03\x04" + os.urandom(4000))
    _refused_quickly(tmp_path / "garbage.pth", "not a readable zip archive")
