"""The model pool: lazy shared loading, devices and dtypes from settings, per-model locks,
LRU eviction under a memory budget (offload to the CPU, then unload), the one out-of-memory
policy (free and evict, retry once, shrink the work, then a clear 503) and the one model
wrapper (:class:`PooledModule`).

Models here are small real torch modules. No GPU is visible in CI, so the offload tests use
:class:`Parked`, a real module whose ``to()`` only records where the pool sends it (a module
cannot be put on a CUDA device that does not exist); ``tests/gpu`` repeats them on CUDA.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from igpt_server.errors import ServiceUnavailable
from igpt_server.models.pool import MiB, ModelPool, OutOfMemory, PooledModule, Shrink, family_of, model_memory_bytes
from igpt_server.settings import PoolSettings, Settings


def settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(data_dir=tmp_path, **kw)  # type: ignore[arg-type]


def megabyte_module(megabytes: float = 1.0) -> torch.nn.Module:
    """A module whose weights take ``megabytes`` MiB (fp32)."""
    return torch.nn.Linear(int(megabytes * MiB / 4), 1, bias=False)


class Parked(torch.nn.Module):
    """A 1 MiB module that records every device the pool moves it to (see the module docstring)."""

    def __init__(self, device: str) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(MiB // 4))
        self.moves = [device]

    def to(self, device: str) -> Parked:  # type: ignore[override]
        self.moves.append(device)
        return self


def states(pool: ModelPool) -> dict[str, str]:
    return {m.key: m.state for m in pool.describe()}


def test_a_model_loads_once_on_first_use_and_is_shared(tmp_path: Path) -> None:
    pool = ModelPool(settings(tmp_path))
    calls: list[str] = []

    def loader(device: str) -> torch.nn.Module:
        calls.append(device)
        return megabyte_module(0.5)

    assert pool.describe() == []
    with pool.use("sam.tiny", loader, backend="sam", device="cpu", dtype="fp32") as first:
        pass
    with pool.use("sam.tiny", loader, backend="sam", device="cpu", dtype="fp32") as second:
        assert second is first
    assert calls == ["cpu"]
    (info,) = pool.describe()
    assert (info.key, info.family, info.backend, info.device, info.dtype) == ("sam.tiny", "sam", "sam", "cpu", "fp32")
    assert info.loaded and info.state == "loaded" and info.placement == "cpu" and not info.in_use
    assert info.memory_bytes == model_memory_bytes(first) == 0.5 * MiB
    assert info.loads == 1 and info.last_used is not None


def test_device_and_dtype_come_from_the_settings(tmp_path: Path) -> None:
    pool = ModelPool(settings(tmp_path, devices={"ocr": "cpu", "sam": "cuda"}, dtypes={"sam": "fp16"}))
    assert pool.device_for("ocr") == "cpu"
    assert pool.device_for("sam") == "cuda:0"
    assert pool.device_for("vqa") == ("cuda:0" if torch.cuda.is_available() else "cpu")  # auto
    assert pool.dtype_for("sam", "cpu") == "fp16"
    assert pool.dtype_for("vqa", "cpu", gpu_default="bf16") == "fp32"  # auto on the CPU
    with pool.use("ocr.reader", lambda device: megabyte_module(0.1), backend="easyocr"):
        pass
    assert pool.describe()[0].device == "cpu"  # no device given: the family's device
    assert family_of("inpaint.sd15") == "inpaint"


def test_an_unknown_dtype_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown dtypes"):
        settings(tmp_path, dtypes={"sam": "int3"})


def test_requests_for_one_model_queue_while_other_models_run(tmp_path: Path) -> None:
    pool = ModelPool(settings(tmp_path))
    inside_a = threading.Event()
    release_a = threading.Event()
    log: list[str] = []

    def hold_a() -> None:
        with pool.use("a.m", lambda d: megabyte_module(0.1), backend="x", device="cpu"):
            log.append("first a in")
            inside_a.set()
            release_a.wait(5)
            log.append("first a out")

    def second_a() -> None:
        with pool.use("a.m", lambda d: megabyte_module(0.1), backend="x", device="cpu"):
            log.append("second a in")

    def use_b() -> None:
        with pool.use("b.m", lambda d: megabyte_module(0.1), backend="x", device="cpu"):
            log.append("b in")

    holder = threading.Thread(target=hold_a)
    holder.start()
    assert inside_a.wait(5)
    waiter = threading.Thread(target=second_a)
    waiter.start()
    other = threading.Thread(target=use_b)
    other.start()
    other.join(5)
    time.sleep(0.05)
    assert log == ["first a in", "b in"]  # b ran while a was held; the second a waits
    assert {m.key: m.in_use for m in pool.describe()}["a.m"]
    release_a.set()
    holder.join(5)
    waiter.join(5)
    assert log == ["first a in", "b in", "first a out", "second a in"]


def test_the_least_recently_used_idle_model_is_unloaded_over_a_cpu_budget(tmp_path: Path) -> None:
    pool = ModelPool(settings(tmp_path, pool=PoolSettings(cpu_budget_mb=2.5)))
    for key in ("a.m", "b.m"):
        with pool.use(key, lambda d: megabyte_module(1), backend="x", device="cpu"):
            pass
    with pool.use("a.m", lambda d: megabyte_module(1), backend="x", device="cpu"):
        pass  # a is now more recent than b
    with pool.use("c.m", lambda d: megabyte_module(1), backend="x", device="cpu"):
        pass
    assert states(pool) == {"a.m": "loaded", "b.m": "unloaded", "c.m": "loaded"}
    evicted = {m.key: m for m in pool.describe()}["b.m"]
    assert evicted.evictions == 1 and evicted.memory_bytes == 0 and evicted.placement is None
    with pool.use("b.m", lambda d: megabyte_module(1), backend="x", device="cpu"):
        pass  # loads again, evicting a (now the oldest)
    assert states(pool) == {"a.m": "unloaded", "b.m": "loaded", "c.m": "loaded"}
    assert {m.key: m.loads for m in pool.describe()}["b.m"] == 2
    (cpu,) = pool.status().devices
    assert cpu.device == "cpu" and cpu.used_bytes == 2 * MiB and cpu.budget_bytes == int(2.5 * MiB)


def test_a_model_in_use_is_never_evicted(tmp_path: Path) -> None:
    pool = ModelPool(settings(tmp_path, pool=PoolSettings(cpu_budget_mb=1.5)))
    with pool.use("a.m", lambda d: megabyte_module(1), backend="x", device="cpu") as held:
        with pool.use("b.m", lambda d: megabyte_module(1), backend="x", device="cpu"):
            assert states(pool) == {"a.m": "loaded", "b.m": "loaded"}  # over budget: both are busy
        assert held.weight.shape[1] > 0
    with pool.use("c.m", lambda d: megabyte_module(1), backend="x", device="cpu"):
        pass
    assert states(pool)["c.m"] == "loaded"
    assert sum(s == "loaded" for s in states(pool).values()) == 1


def test_gpu_models_are_offloaded_to_the_cpu_then_unloaded(tmp_path: Path) -> None:
    pool = ModelPool(settings(tmp_path, pool=PoolSettings(gpu_budget_mb=1.5, offload_mb=1.5)))
    made: dict[str, Parked] = {}

    def loader(key: str):  # type: ignore[no-untyped-def]
        def load(device: str) -> Parked:
            made[key] = Parked(device)
            return made[key]

        return load

    for key in ("sam.m", "ground.m"):
        with pool.use(key, loader(key), backend="x", device="cuda:0", dtype="bf16"):
            pass
    assert states(pool) == {"sam.m": "offloaded", "ground.m": "loaded"}
    assert made["sam.m"].moves == ["cuda:0", "cpu"]
    info = {m.key: m for m in pool.describe()}["sam.m"]
    assert info.placement == "cpu" and info.device == "cuda:0" and info.loaded and info.memory_bytes == MiB

    with pool.use("sam.m", loader("sam.m"), backend="x", device="cuda:0") as model:
        assert model is made["sam.m"]  # moved back, not reloaded
    assert made["sam.m"].moves == ["cuda:0", "cpu", "cuda:0"]
    assert made["ground.m"].moves == ["cuda:0", "cpu"]
    assert {m.key: m.loads for m in pool.describe()} == {"sam.m": 1, "ground.m": 1}

    with pool.use("vqa.m", loader("vqa.m"), backend="x", device="cuda:0"):
        pass  # sam is offloaded; the offload space holds one model, so ground (older) is unloaded
    assert states(pool) == {"sam.m": "offloaded", "ground.m": "unloaded", "vqa.m": "loaded"}
    status = pool.status()
    assert status.offloaded_bytes == MiB and status.offload_budget_bytes == int(1.5 * MiB)
    assert [(d.device, d.used_bytes) for d in status.devices if d.device == "cuda:0"] == [("cuda:0", MiB)]


def test_offloading_can_be_switched_off(tmp_path: Path) -> None:
    pool = ModelPool(settings(tmp_path, pool=PoolSettings(gpu_budget_mb=1.5, offload_mb=0)))
    for key in ("sam.m", "ground.m"):
        with pool.use(key, Parked, backend="x", device="cuda:0"):
            pass
    assert states(pool) == {"sam.m": "unloaded", "ground.m": "loaded"}


def test_out_of_memory_while_loading_frees_the_device_and_retries_once(tmp_path: Path) -> None:
    pool = ModelPool(settings(tmp_path, pool=PoolSettings(gpu_budget_mb=100)))
    with pool.use("ground.m", Parked, backend="x", device="cuda:0"):
        pass
    attempts: list[str] = []

    def flaky(device: str) -> Parked:
        attempts.append(device)
        if len(attempts) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return Parked(device)

    assert pool.run("sam.m", flaky, lambda model: "segmented", backend="x", device="cuda:0") == "segmented"
    assert len(attempts) == 2
    assert states(pool) == {"ground.m": "offloaded", "sam.m": "loaded"}  # the idle model made room


def test_out_of_memory_on_every_load_is_a_503_and_the_pool_stays_usable(tmp_path: Path) -> None:
    pool = ModelPool(settings(tmp_path))

    def too_big(device: str) -> Parked:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(OutOfMemory, match=r"out of memory for model 'sam\.big' even after evicting") as caught:
        pool.run("sam.big", too_big, lambda model: None, backend="x", device="cuda:0")
    assert caught.value.code == "out_of_memory" and caught.value.status == 503
    assert isinstance(caught.value, ServiceUnavailable) and caught.value.retry_after > 0
    assert states(pool) == {"sam.big": "unloaded"}
    with pool.use("sam.big", Parked, backend="x", device="cuda:0") as model:
        assert isinstance(model, Parked)


def test_a_bare_use_block_out_of_memory_evicts_idle_models_and_is_a_503(tmp_path: Path) -> None:
    pool = ModelPool(settings(tmp_path, pool=PoolSettings(gpu_budget_mb=100)))
    with pool.use("ground.m", Parked, backend="x", device="cuda:0"):
        pass
    with (
        pytest.raises(OutOfMemory, match=r"ran out of memory while running model 'sam\.m'"),
        pool.use("sam.m", Parked, backend="x", device="cuda:0"),
    ):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")
    assert states(pool) == {"ground.m": "offloaded", "sam.m": "loaded"}
    assert not {m.key: m.in_use for m in pool.describe()}["sam.m"]
    with pool.use("sam.m", Parked, backend="x", device="cuda:0"):
        pass


class Work:
    """Work that runs out of memory its first ``failures`` times (at any size), recording each try."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.tries: list[str] = []

    def at(self, size: str) -> Callable[[object], str]:
        def run(model: object) -> str:
            self.tries.append(size)
            if len(self.tries) <= self.failures:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
            return f"done at {size}"

        return run


def test_the_policy_frees_the_device_and_retries_the_same_work_once(tmp_path: Path) -> None:
    pool = ModelPool(settings(tmp_path, pool=PoolSettings(gpu_budget_mb=100)))
    with pool.use("ground.m", Parked, backend="x", device="cuda:0"):
        pass
    work = Work(failures=1)
    result = pool.run(
        "sam.m", Parked, work.at("512"), backend="x", device="cuda:0", shrink=Shrink(work.at("384"), "smaller")
    )
    assert result == "done at 512" and work.tries == ["512", "512"]
    assert states(pool) == {"ground.m": "offloaded", "sam.m": "loaded"}  # evicted before the retry


def test_then_it_shrinks_the_work_where_the_tool_allows(tmp_path: Path) -> None:
    pool = ModelPool(settings(tmp_path))
    work = Work(failures=2)
    shrink = Shrink(work.at("384"), "at 384 px instead of 512 px")
    assert pool.run("sam.m", Parked, work.at("512"), backend="x", device="cuda:0", shrink=shrink) == "done at 384"
    assert work.tries == ["512", "512", "384"]
    assert {m.key: m.loads for m in pool.describe()} == {"sam.m": 1}  # the model stayed loaded throughout


def test_then_a_clear_503_says_what_was_tried_and_the_pool_stays_usable(tmp_path: Path) -> None:
    pool = ModelPool(settings(tmp_path))
    work = Work(failures=3)
    shrink = Shrink(work.at("384"), "at 384 px instead of 512 px")
    with pytest.raises(OutOfMemory) as caught:
        pool.run("inpaint.sd", Parked, work.at("512"), backend="x", device="cuda:0", shrink=shrink)
    error = caught.value
    assert error.status == 503 and error.code == "out_of_memory"
    assert "at 384 px instead of 512 px" in error.message and "IGPT_DEVICES=inpaint=" in error.message
    assert error.detail["tried"] == ["after freeing the device", "at 384 px instead of 512 px"]
    assert work.tries == ["512", "512", "384"]
    assert states(pool) == {"inpaint.sd": "loaded"} and not pool.describe()[0].in_use
    assert pool.run("inpaint.sd", Parked, work.at("512"), backend="x", device="cuda:0") == "done at 512"


def test_without_a_way_to_shrink_the_second_failure_is_the_503(tmp_path: Path) -> None:
    pool = ModelPool(settings(tmp_path))
    work = Work(failures=2)
    with pytest.raises(OutOfMemory, match="after freeing the device"):
        pool.run("vqa.m", Parked, work.at("full"), backend="x", device="cuda:0")
    assert work.tries == ["full", "full"]


def test_other_errors_pass_through_the_policy_untouched_and_are_not_retried(tmp_path: Path) -> None:
    pool = ModelPool(settings(tmp_path))
    tries: list[int] = []

    def broken(model: object) -> None:
        tries.append(1)
        raise ValueError("the mask is empty")

    with pytest.raises(ValueError, match="the mask is empty"):
        pool.run("sam.m", Parked, broken, backend="x", device="cuda:0", shrink=Shrink(broken, "smaller"))
    assert tries == [1]


# the one model wrapper ----------------------------------------------------------------------


def test_a_pooled_module_is_yielded_as_it_is_and_counts_its_modules_weights(tmp_path: Path) -> None:
    pool = ModelPool(settings(tmp_path))
    shared = megabyte_module(0.5)
    predictor = {"network": shared}  # a library object that is not a module itself
    wrapped = PooledModule(predictor, [shared, torch.nn.Sequential(shared)], device="cpu", dtype="bf16")
    with pool.use("sam.m", lambda d: wrapped, backend="sam", device="cpu") as model:
        assert model is wrapped and model.obj is predictor
    (info,) = pool.describe()
    assert info.memory_bytes == 0.5 * MiB  # a tensor shared by two modules counts once
    assert info.dtype == "bf16"  # the wrapper's dtype when the caller names none
    assert pool.loaded("sam.m") is wrapped and pool.loaded("vqa.none") is None


def test_offloading_moves_the_modules_and_tells_the_library_object(tmp_path: Path) -> None:
    pool = ModelPool(settings(tmp_path, pool=PoolSettings(gpu_budget_mb=1.5, offload_mb=4)))
    moves: list[str] = []

    def load(device: str) -> PooledModule[list[str]]:
        return PooledModule(moves, [Parked(device)], device=device, on_move=lambda obj, d: obj.append(d))

    with pool.use("sam.m", load, backend="x", device="cuda:0"):
        pass
    with pool.use("ground.m", Parked, backend="x", device="cuda:0"):
        pass
    assert states(pool) == {"sam.m": "offloaded", "ground.m": "loaded"} and moves == ["cpu"]
    wrapped = pool.loaded("sam.m")
    assert wrapped is not None and wrapped.device == "cpu" and wrapped.modules[0].moves == ["cuda:0", "cpu"]
    with pool.use("sam.m", load, backend="x", device="cuda:0"):
        pass
    assert moves == ["cpu", "cuda:0"]


def test_a_model_without_torch_weights_is_unloaded_rather_than_offloaded(tmp_path: Path) -> None:
    pool = ModelPool(settings(tmp_path))
    with pool.use("speech.ct2", lambda d: PooledModule(object(), [], device=d), backend="x", device="cuda:0"):
        pass
    with pool.use("ground.m", Parked, backend="x", device="cuda:0"):
        pass
    assert pool.free("cuda:0") == 2
    assert states(pool) == {"speech.ct2": "unloaded", "ground.m": "offloaded"}


def test_a_failing_loader_leaves_the_model_unloaded_and_is_tried_again(tmp_path: Path) -> None:
    pool = ModelPool(settings(tmp_path))

    def broken(device: str) -> torch.nn.Module:
        raise FileNotFoundError("no checkpoint at /models/sam")

    with pytest.raises(FileNotFoundError), pool.use("sam.m", broken, backend="sam", device="cpu"):
        pass
    assert states(pool) == {"sam.m": "unloaded"}
    with pool.use("sam.m", lambda d: megabyte_module(0.1), backend="sam", device="cpu"):
        pass
    assert states(pool) == {"sam.m": "loaded"}


def test_models_of_a_backend_are_listed_by_family(tmp_path: Path) -> None:
    pool = ModelPool(settings(tmp_path))
    for key in ("sam.vit_h", "ground.swint", "vqa.vlm"):
        with pool.use(key, lambda d: megabyte_module(0.1), backend="x", device="cpu"):
            pass
    assert [m.key for m in pool.describe_families(("ground", "sam"))] == ["sam.vit_h", "ground.swint"]
    assert pool.describe_families(()) == []


def test_a_diffusers_style_pipeline_is_measured_by_its_components(tmp_path: Path) -> None:
    class Pipeline:
        def __init__(self) -> None:
            self.components = {"unet": megabyte_module(1), "vae": megabyte_module(0.5), "scheduler": object()}

    assert model_memory_bytes(Pipeline()) == 1.5 * MiB
