"""Tests for archives on a Ray cluster (ardmzip/cluster.py, ``--ray``).

One local Ray instance with 2 CPUs serves the module (``ray.init(num_cpus=2)``); every
archive made or read on it is compared byte for byte with the one-process path. Batches are
made tiny (``codec.BATCH_SUBPIXELS``) so a few small images give many Ray tasks. Skipped
without Ray (pip install 'ardmzip[ray]'), except the checks that need none.
"""
from __future__ import annotations

import functools
import importlib.util
import logging
import os
import socket
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ardmzip import archive, cluster, codec
from ardmzip.archive import extract_all, test_archive, write_archive
from ardmzip.cluster import ClusterError

STEPS = 2
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs ray: pip install 'ardmzip[ray]'")


# ---------------------------------------------------------------- helpers


def crash_once(marker: str, fn, *args):
    """A job that kills its worker process the first time it meets a batch of two or more
    images (``marker`` records that it did), as a node lost mid-run would."""
    if len(args[0]) >= 2 and not os.path.exists(marker):
        Path(marker).touch()
        os._exit(1)
    return fn(*args)


def crash_always(fn, *args):
    os._exit(1)


def with_job(mapper, wrap):
    """``mapper`` with each task's job wrapped (``wrap(fn)``), as ``jobs=`` takes it."""
    return lambda fn, tasks: mapper(wrap(fn), tasks)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_tree(root: Path) -> Path:
    rng = np.random.default_rng(5)
    for i, (mode, size) in enumerate([("RGB", (6, 5)), ("L", (4, 4)), ("RGBA", (5, 4)), ("RGB", (6, 5)),
                                      ("RGB", (6, 5)), ("L", (3, 7)), ("RGB", (8, 8)), ("RGB", (6, 5))]):
        c = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
        path = root / f"{i % 3}" / f"{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.frombytes(mode, size, rng.integers(0, 256, (size[1], size[0], c), np.uint8).tobytes()).save(path)
    return root


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, logging_level=logging.ERROR, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])     # crash_once & co. travel by value
    yield ray
    ray.shutdown()


@pytest.fixture
def on_ray(ray_instance):
    with cluster.connect() as mapper:          # uses the running instance, leaves it running
        yield mapper


@pytest.fixture
def small_batches(monkeypatch):
    """Batches of about 64 subpixels: one or two tiny images each, so many tasks."""
    monkeypatch.setattr(codec, "BATCH_SUBPIXELS", 64)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return make_tree(tmp_path_factory.mktemp("src") / "photos")


@pytest.fixture(scope="module")
def plain(tree, tmp_path_factory) -> Path:
    """The tree's archive from one process."""
    out = tmp_path_factory.mktemp("plain") / "photos.ardm"
    write_archive(tree, out, STEPS)
    return out


# ---------------------------------------------------------------- without Ray


def test_a_missing_ray_is_one_clear_line(monkeypatch, invoke, tree, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)            # import ray -> ImportError
    with pytest.raises(ClusterError, match=r"pip install 'ardmzip\[ray\]'"):
        with cluster.connect():
            pass
    out = tmp_path / "x.ardm"
    result = invoke("compress", tree, "-o", out, "-s", STEPS, "--ray")
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"ardmzip: {tree}: --ray needs Ray: pip install 'ardmzip[ray]'"]
    assert not out.exists() and not Path(str(out) + archive.PARTIAL_SUFFIX).exists()


def test_a_worker_running_other_code_refuses_the_task():
    with pytest.raises(ClusterError, match="install the same ardmzip on every node"):
        cluster._task(pow, "0.0.0 (format 1, archive 1)", 2, 3)
    assert cluster._task(pow, cluster.code_id(), 2, 3) == 8


def test_an_argument_repeated_from_task_to_task_is_put_once():
    class FakeRay:
        puts: list = []

        def put(self, value):
            self.puts.append(value)
            return ("ref", len(self.puts))

    shared = cluster._SharedArgs(FakeRay())
    weights, batches = b"w" * 100_000, [[1], [2], [3]]
    sent = [shared.args((batch, 16, "xic-s48", weights)) for batch in batches]
    assert sent[0] == (batches[0], 16, "xic-s48", weights)                  # once: sent as is
    assert [s[0] for s in sent] == batches                                  # each task's own data travels
    assert sent[1][3] == sent[2][3] == ("ref", 1) and FakeRay.puts == [weights]


def test_cli_refuses_ray_where_it_does_not_apply(invoke, tmp_path):
    Image.new("L", (3, 3)).save(tmp_path / "a.png")
    result = invoke("compress", "-s", STEPS, tmp_path / "a.png", "--ray")
    assert result.exit_code == 2 and "archives" in result.stderr and not (tmp_path / "a.ardm").exists()
    result = invoke("compress", tmp_path, "-o", tmp_path / "x.ardm", "-j", "2", "--ray=auto")
    assert result.exit_code == 2 and "-j" in result.stderr and not (tmp_path / "x.ardm").exists()


# ---------------------------------------------------------------- the ordered map


@needs_ray
def test_ray_map_keeps_order_and_lands_work_before_an_input_error(ray_instance):
    def tasks():
        for i in range(7):
            yield i, (i, 10)
        raise OSError("bad input")

    with cluster.connect(in_flight=3) as mapper:
        got = []
        with pytest.raises(OSError, match="bad input"):
            for tag, value in mapper(pow, tasks()):
                got.append((tag, value))
    assert got == [(i, i ** 10) for i in range(7)]


@needs_ray
def test_ray_map_keeps_at_most_in_flight_tasks_ahead(ray_instance):
    drawn = []

    def tasks():
        for i in range(12):
            drawn.append(i)
            yield i, (i, 2)

    with cluster.connect(in_flight=3) as mapper:
        for tag, value in mapper(pow, tasks()):
            assert len(drawn) - tag <= 3 and value == tag ** 2


@needs_ray
def test_an_error_of_the_job_is_raised_as_itself(on_ray):
    with pytest.raises(ValueError, match="invalid literal"):
        list(on_ray(int, [(0, ("12",)), (1, ("x",))]))


@needs_ray
def test_an_unreachable_address_fails_fast_with_one_line():
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(ClusterError, match=f"cannot reach the Ray cluster at {address}"):
        with cluster.connect(address):
            pass
    with pytest.raises(ClusterError, match="bad Ray address"):
        with cluster.connect("nowhere"):
            pass
    with socket.socket() as server:                  # answers, then hangs up: Ray would retry for ever
        server.bind(("127.0.0.1", 0))
        server.listen()
        hang_up = threading.Thread(target=lambda: server.accept()[0].close(), daemon=True)
        hang_up.start()
        address = "127.0.0.1:%d" % server.getsockname()[1]
        with pytest.raises(ClusterError, match=f"(no Ray cluster|cannot reach the Ray cluster) at {address}: "):
            with cluster.connect(address):
                pass
        hang_up.join()


# ---------------------------------------------------------------- archives on Ray


@needs_ray
def test_archives_on_ray_are_byte_identical(on_ray, small_batches, tree, plain, tmp_path):
    out = tmp_path / "ray.ardm"
    write_archive(tree, out, STEPS, jobs=on_ray)
    assert out.read_bytes() == plain.read_bytes()
    arrays = {"a": np.random.default_rng(1).integers(0, 256, (9, 4, 5, 3), np.uint8)}
    np.savez(tmp_path / "set.npz", **arrays)
    write_archive(tmp_path / "set.npz", tmp_path / "one.ardm", STEPS)
    write_archive(tmp_path / "set.npz", tmp_path / "many.ardm", STEPS, jobs=on_ray)
    assert (tmp_path / "many.ardm").read_bytes() == (tmp_path / "one.ardm").read_bytes()


@needs_ray
def test_testing_and_extracting_on_ray_give_the_same_results(on_ray, small_batches, plain, tmp_path):
    damaged = tmp_path / "damaged.ardm"
    data = bytearray(plain.read_bytes())
    third = archive.read_index(plain).members[2]
    data[third.offset + third.size - 8] ^= 0x10                        # inside its streams
    damaged.write_bytes(bytes(data))
    expected = [(n, type(e)) for n, e in test_archive(damaged)]
    assert [(n, type(e)) for n, e in test_archive(damaged, jobs=on_ray)] == expected
    assert expected[2][1] is not type(None) and sum(e is type(None) for _, e in expected) == len(expected) - 1
    extract_all(plain, tmp_path / "one")
    extract_all(plain, tmp_path / "ray", jobs=on_ray)
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.png"))
    assert files and files == sorted(p.relative_to(tmp_path / "ray") for p in (tmp_path / "ray").rglob("*.png"))
    assert all((tmp_path / "one" / f).read_bytes() == (tmp_path / "ray" / f).read_bytes() for f in files)


@needs_ray
def test_a_carried_model_travels_with_the_tasks(on_ray, small_batches, tmp_path):
    """Workers that do not have the model (it is registered nowhere) get it from the task."""
    from ardmzip import weights
    m = weights.load()
    model = tmp_path / "thumbs.npz"
    model.write_bytes(weights.to_bytes(m.net, m.curve, dict(m.meta, note="a copy only this test has")))
    images = np.random.default_rng(2).integers(0, 256, (6, 4, 5, 3), np.uint8)
    np.savez(tmp_path / "set.npz", images=images)
    write_archive(tmp_path / "set.npz", tmp_path / "one.ardm", STEPS, model=str(model))
    write_archive(tmp_path / "set.npz", tmp_path / "ray.ardm", STEPS, model=str(model), jobs=on_ray)
    assert (tmp_path / "ray.ardm").read_bytes() == (tmp_path / "one.ardm").read_bytes()
    assert all(e is None for _, e in extract_all(tmp_path / "ray.ardm", tmp_path / "back.npz", jobs=on_ray))
    with np.load(tmp_path / "back.npz") as back:
        assert np.array_equal(back["images"], images)


@needs_ray
def test_a_model_file_given_to_the_driver_reaches_the_workers(invoke, on_ray, small_batches, tmp_path):
    """decompress/test --model FILE --ray of an archive that names, not carries, a model this
    ardmzip does not have: the driver sends the file's bytes to the workers (once, by reference)."""
    import hashlib
    from ardmzip import weights
    m = weights.load()
    model = tmp_path / "named.npz"
    model.write_bytes(weights.to_bytes(m.net, m.curve, dict(m.meta, note="named by an archive, not carried")))
    images = np.random.default_rng(4).integers(0, 256, (4, 4, 5, 3), np.uint8)
    np.savez(tmp_path / "set.npz", images=images)
    out = tmp_path / "named.ardm"
    with pytest.MonkeyPatch.context() as mp:             # registered where the archive was made
        mp.setitem(weights.REGISTRY, "named", (str(model), hashlib.sha256(model.read_bytes()).hexdigest()))
        mp.setattr(weights, "_CACHE", {})
        mp.setattr(weights, "_KNOWN", {})
        assert write_archive(tmp_path / "set.npz", out, STEPS, model="named").index.model_bytes == 0
        mp.setattr(weights, "_CACHE", {})
        mp.delitem(weights.REGISTRY, "named")
        result = invoke("test", out, "--ray")
        assert result.exit_code == 4 and "model 'named'" in result.stderr and "--model" in result.stderr
        result = invoke("test", out, "--model", model, "--ray")
        assert result.exit_code == 0 and f"{out}: OK (4 images)" in result.stderr, result.stderr
        result = invoke("decompress", out, "-o", tmp_path / "back.npz", "--model", model, "--ray", "-q")
        assert result.exit_code == 0 and result.stderr == "", result.stderr
    with np.load(tmp_path / "back.npz") as back:
        assert np.array_equal(back["images"], images)


@needs_ray
def test_a_killed_worker_has_its_batch_redone(on_ray, monkeypatch, tree, plain, tmp_path):
    monkeypatch.setattr(codec, "BATCH_SUBPIXELS", 200)            # two or three tiny images a batch
    marker = tmp_path / "crashed"
    mapper = with_job(on_ray, lambda fn: functools.partial(crash_once, str(marker), fn))
    out = tmp_path / "ray.ardm"
    write_archive(tree, out, STEPS, jobs=mapper)
    assert marker.exists()                                       # a worker did die mid-run
    assert out.read_bytes() == plain.read_bytes()


@needs_ray
def test_a_batch_that_keeps_killing_its_worker_is_a_clear_error(ray_instance, tree, tmp_path):
    out = tmp_path / "ray.ardm"
    with cluster.connect(retries=1) as mapper:
        with pytest.raises(ClusterError, match=r"Ray could not finish a batch \(tried 2 times\)"):
            write_archive(tree, out, STEPS, jobs=with_job(mapper, lambda fn: functools.partial(crash_always, fn)))
    assert not out.exists()


@needs_ray
def test_cli_on_ray(invoke, ray_instance, tree, plain, tmp_path):
    out = tmp_path / "ray.ardm"
    result = invoke("compress", tree, "-o", out, "-s", STEPS, "--ray")
    assert result.exit_code == 0, result.stderr
    assert "2 CPUs on 1 node" in result.stderr and out.read_bytes() == plain.read_bytes()
    result = invoke("test", out, "--ray")
    assert result.exit_code == 0 and f"{out}: OK (8 images)" in result.stderr, result.stderr
    result = invoke("decompress", out, "-o", tmp_path / "back", "--ray", "-q")
    assert result.exit_code == 0 and result.stderr == "", result.stderr
    assert len(list((tmp_path / "back").rglob("*.png"))) == 8
    result = invoke("compress", tree, "-o", tmp_path / "x.ardm", "--ray", f"127.0.0.1:{free_port()}")
    assert result.exit_code == 1 and "cannot reach the Ray cluster" in result.stderr
    assert not (tmp_path / "x.ardm").exists()


@needs_ray
def test_the_scaling_benchmark_runs(tmp_path):
    """benchmarks.ray_scaling end to end on six tiny images (its own process: it starts Ray itself)."""
    import json
    import subprocess
    np.savez(tmp_path / "tiny.npz", images=np.random.default_rng(3).integers(0, 256, (6, 4, 4, 3), np.uint8))
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-m", "benchmarks.ray_scaling", str(tmp_path / "tiny.npz"), "--workers", "2",
                           "--steps", str(STEPS), "--out", str(tmp_path / "out")], cwd=root, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = json.loads((tmp_path / "out" / "ray_scaling.json").read_text())["rows"]
    assert [r["how"] for r in rows] == ["1 process, 1 thread", "Ray, 2 workers"]
    assert rows[0]["bytes"] == rows[1]["bytes"] and rows[1]["compress_worker_busy_s"] > 0
