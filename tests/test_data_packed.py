"""The packed split, its cache file and what must never be lost or read half-written: gathers and
densification against brute force, the file format's checks, a build killed half-way, two processes
building at once, damaged files, no space left, a lock held too long, and reused host buffers."""

from __future__ import annotations

import errno
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from exodus_lightning.data import CacheError, CompactBatch, pad_collate
from exodus_lightning.data.binning import BinnedEvents
from exodus_lightning.data.host_buffers import HostBuffers
from exodus_lightning.data.packed import PackedSplit
from exodus_lightning.data import packed_file
from exodus_lightning.data.packed_file import CorruptCacheError, read_packed, write_packed
from exodus_lightning.data.split_cache import SplitCache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _random_binned(rng, n, feature_shape, max_steps=30, max_count=9):
    f = int(np.prod(feature_shape))
    out = []
    for _ in range(n):
        steps = int(rng.integers(1, max_steps))
        k = int(rng.integers(0, min(steps * f, 200)))
        cells = np.sort(rng.choice(steps * f, size=k, replace=False))
        out.append(BinnedEvents(cells, rng.integers(1, max_count + 1, k), steps))
    return out


def _brute_force_batch(binned, labels, idx, feature_shape):
    """Dense frames sample by sample (cell = step * F + feature), padded with pad_collate."""
    f = int(np.prod(feature_shape))
    samples = []
    for i in idx:
        b = binned[i]
        x = np.zeros((b.n_steps, f), np.float32)
        for c, n in zip(b.cells, b.counts):
            x[c // f, c % f] = n
        samples.append((torch.from_numpy(x.reshape(b.n_steps, *feature_shape)), labels[i]))
    return pad_collate(samples)


@pytest.mark.parametrize("feature_shape", [(7,), (2, 3, 4)])
def test_gather_and_densify_equal_brute_force(feature_shape):
    rng = np.random.default_rng(0)
    binned = _random_binned(rng, 40, feature_shape)
    labels = list(rng.integers(0, 5, 40))
    split = PackedSplit.from_binned(binned, labels, feature_shape)
    assert split.cells.dtype == torch.int32 and split.counts.dtype == torch.uint8
    for idx in ([0], [39, 0, 5, 5], list(rng.permutation(40))):
        batch = split.gather(idx)
        assert isinstance(batch, CompactBatch) and batch.n_steps == max(binned[i].n_steps for i in idx)
        want = _brute_force_batch(binned, labels, idx, feature_shape)
        for dtype in (torch.float32, torch.float64, torch.bfloat16):
            got = batch.densify(dtype)
            assert got.x.dtype == dtype and torch.equal(got.x.float(), want.x)
            assert torch.equal(got.y, want.y) and torch.equal(got.lengths, want.lengths)
    with pytest.raises(ValueError, match="indices must be a non-empty sequence"):
        split.gather([])


def test_wide_types_when_values_need_them():
    big_count = [BinnedEvents(np.array([0, 3]), np.array([300, 1]), 1)]
    assert PackedSplit.from_binned(big_count, [0], (4,)).counts.dtype == torch.int16
    big_cell = [BinnedEvents(np.array([5, 2**31 + 7]), np.array([1, 2]), 2)]
    split = PackedSplit.from_binned(big_cell, [0], (2**31,))
    assert split.cells.dtype == torch.int64 and split.gather([0]).cells.tolist() == [5, 2**31 + 7]
    with pytest.raises(ValueError, match="2 binned recordings but 1 labels"):
        PackedSplit.from_binned(big_count * 2, [0], (4,))


def _split(seed=1, n=25):
    rng = np.random.default_rng(seed)
    return PackedSplit.from_binned(_random_binned(rng, n, (2, 5, 5)), list(rng.integers(0, 3, n)), (2, 5, 5))


def _same(a, b):
    for name in ("cells", "counts", "offsets", "n_steps", "labels"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.feature_shape == b.feature_shape


def test_file_round_trip_and_checks(tmp_path):
    split = _split()
    path = str(tmp_path / "s.packed")
    write_packed(path, split, {"dataset": "unit"})
    _same(read_packed(path), split)
    assert os.listdir(tmp_path) == ["s.packed"]  # no temporary left
    data = bytearray(open(path, "rb").read())
    # truncated
    open(path, "wb").write(data[:-100])
    with pytest.raises(CorruptCacheError, match="truncated"):
        read_packed(path)
    # one flipped byte in the arrays
    damaged = bytearray(data)
    damaged[-200] ^= 0xFF
    open(path, "wb").write(damaged)
    with pytest.raises(CorruptCacheError, match="checksum mismatch"):
        read_packed(path)
    # another format version is never read
    open(path, "wb").write(bytes(data).replace(b'"format_version": 1', b'"format_version": 9'))
    with pytest.raises(CorruptCacheError, match="format version 9"):
        read_packed(path)
    open(path, "wb").write(b"not a cache")
    with pytest.raises(CorruptCacheError, match="not a packed cache"):
        read_packed(path)


def test_damaged_cache_is_named_and_rebuilt(tmp_path, caplog):
    cache = SplitCache(str(tmp_path), "X-train", {"dt": 1.0})
    builds = []

    def build():
        builds.append(1)
        return _split()

    _same(cache.open(build), _split())
    _same(cache.open(build), _split())
    assert len(builds) == 1
    with open(cache.path, "r+b") as f:
        f.truncate(os.path.getsize(cache.path) - 10)
    with caplog.at_level(logging.WARNING):
        _same(cache.open(build), _split())
    assert len(builds) == 2 and cache.path in caplog.text and "rebuilt" in caplog.text
    assert SplitCache(str(tmp_path), "X-train", {"dt": 2.0}).path != cache.path  # parameters -> key


_CHILD = textwrap.dedent("""
    import os, signal, sys, time
    import numpy as np
    sys.path.insert(0, {root!r})
    from exodus_lightning.data.split_cache import SplitCache
    from tests.test_data_packed import _split
    mode, folder, marker = sys.argv[1:4]
    if mode == "kill-while-writing":
        os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)
    def build():
        with open(marker, "a") as f:
            f.write(f"{{os.getpid()}}\\n")
        time.sleep(1.5 if mode == "race" else 0)
        return _split()
    split = SplitCache(folder, "X-train", {{"dt": 1.0}}).open(build)
    print("OK", int(split.cells.sum()), int(split.counts.sum()))
""")


def _child(mode, folder, marker):
    code = _CHILD.format(root=ROOT)
    return subprocess.Popen([sys.executable, "-c", code, mode, folder, marker], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_a_build_killed_while_writing_leaves_no_cache_and_is_redone(tmp_path, caplog):
    folder, marker = str(tmp_path / "cache"), str(tmp_path / "marker")
    p = _child("kill-while-writing", folder, marker)
    p.communicate(timeout=120)
    assert p.returncode == -signal.SIGKILL
    cache = SplitCache(folder, "X-train", {"dt": 1.0})
    assert not cache.exists
    leftovers = [f for f in os.listdir(folder) if f.endswith(".tmp")]
    assert len(leftovers) == 1  # the half-written file, under a temporary name
    with caplog.at_level(logging.WARNING):
        _same(cache.open(_split), _split())
    assert "did not finish" in caplog.text and leftovers[0] in caplog.text
    assert not [f for f in os.listdir(folder) if f.endswith(".tmp")]


def test_two_processes_build_once(tmp_path):
    folder, marker = str(tmp_path / "cache"), str(tmp_path / "marker")
    procs = [_child("race", folder, marker) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    assert len(open(marker).read().split()) == 1  # one build
    lines = [o[0].split() for o in outs]
    assert lines[0] == lines[1] and lines[0][0] == "OK"


def test_lock_held_too_long_names_its_holder(tmp_path):
    lock = str(tmp_path / "X.packed.lock")
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {ROOT!r})
        from exodus_lightning.data.file_lock import FileLock
        with FileLock({lock!r}, timeout_s=5, purpose="building X.packed"):
            print("held", flush=True)
            time.sleep(30)
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        cache = SplitCache(str(tmp_path), "X", {}, lock_timeout_s=0.5)
        cache.path = str(tmp_path / "X.packed")
        t = time.monotonic()
        with pytest.raises(CacheError, match=rf"held by process {holder.pid} on .* \(building X.packed\)"):
            cache.open(_split)
        assert time.monotonic() - t < 5
    finally:
        holder.kill()
        holder.wait()
    _same(cache.open(_split), _split())  # released when its holder died


def test_no_space_left_is_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch):
    folder = str(tmp_path / "cache")
    cache = SplitCache(folder, "X-train", {"dt": 1.0})
    monkeypatch.setattr(packed_file.shutil, "disk_usage", lambda p: type("U", (), {"free": 1000})())
    with pytest.raises(CacheError, match=rf"not enough space in {folder} .* bytes needed, 1,000 free"):
        cache.open(_split)
    monkeypatch.undo()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(packed_file.os, "fsync", full)
    with pytest.raises(CacheError, match=rf"no space left in {folder} while writing .* bytes needed"):
        cache.open(_split)
    assert [f for f in os.listdir(folder) if not f.endswith(".lock")] == []


def test_host_buffers_are_reused_only_when_nothing_refers_to_them():
    pool = HostBuffers(keep=2)
    a = pool.empty((100, 10), torch.float32)
    ptr = a.data_ptr()
    keepers = {
        "view": lambda t: t[3:5],
        "numpy": lambda t: t.numpy(),
        "saved for backward": lambda t: torch.nn.functional.linear(t, torch.ones(2, 10, requires_grad=True)),
    }
    for name, keep in keepers.items():
        held = keep(a)
        del a
        b = pool.empty((100, 10), torch.float32)
        c = pool.empty((100, 10), torch.float32)
        assert ptr not in (b.data_ptr(), c.data_ptr()), f"reused while a {name} was alive"
        del b, c, held
        a = pool.empty((100, 10), torch.float32)
        assert a.data_ptr() == ptr, f"not reused after the {name} was dropped"
    a.share_memory_()  # sent to another process: never handed out again
    del a
    pool.empty((100, 10), torch.float32)
    assert not any(b.is_shared() for b, _ in pool._buffers[torch.float32])


class _Gather(torch.utils.data.Dataset):
    def __init__(self, split):
        self.split = split

    def __len__(self):
        return len(self.split)

    def __getitems__(self, indices):
        return self.split.gather(indices)


def test_a_memory_mapped_split_travels_to_worker_processes_by_file_name(tmp_path):
    import pickle

    path = str(tmp_path / "s.packed")
    write_packed(path, _split(), {})
    mapped = read_packed(path)
    clone = pickle.loads(pickle.dumps(mapped))
    assert clone.path == path and len(pickle.dumps(mapped)) < 1000  # the name, not the arrays
    _same(clone, _split())
    # spawned workers (macOS' default, or multiprocessing_context="spawn") map the file themselves
    loader = torch.utils.data.DataLoader(_Gather(mapped), batch_size=10, num_workers=1, collate_fn=_densify,
                                         multiprocessing_context="spawn")
    got = list(loader)
    want = [_Gather(_split()).__getitems__(list(range(a, min(a + 10, 25)))).densify() for a in (0, 10, 20)]
    assert len(got) == 3 and all(torch.equal(g.x, w.x) and torch.equal(g.y, w.y) for g, w in zip(got, want))


def _densify(batch):
    return batch.densify()
