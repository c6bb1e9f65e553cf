"""data.in_memory=auto decodes an image folder into memory when the decoded images take at most 10% of the
machine's RAM divided by the processes on it: torchrun's LOCAL_WORLD_SIZE processes of one machine each get
their share, whatever the processes on other machines (WORLD_SIZE)."""
import pytest

from vitlab.data import open_dataset
from vitlab.data.sources import folder
from vitlab.data.sources.folder import IN_MEMORY_SHARE, decide_in_memory

RAM = 600_000  # bytes: 10% of it is 60,000, the decoded size of 200 images of 3 x 10 x 10


@pytest.fixture
def small_machine(monkeypatch):
    monkeypatch.setattr(folder, "physical_memory", lambda: RAM)
    assert int(IN_MEMORY_SHARE * RAM) == 60_000
    for var in ("LOCAL_WORLD_SIZE", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_one_process_has_the_whole_budget(small_machine):
    assert decide_in_memory("auto", 200, (10, 10))[0]  # 60,000 bytes <= 60,000
    keep, why = decide_in_memory("auto", 201, (10, 10))
    assert not keep and "read lazily" in why and "RAM)" in why  # not divided


def test_two_processes_of_one_machine_each_get_half(small_machine):
    small_machine.setenv("LOCAL_WORLD_SIZE", "2")  # as torchrun --nproc_per_node 2 sets it, on each of 2 machines
    small_machine.setenv("WORLD_SIZE", "4")
    keep, why = decide_in_memory("auto", 100, (10, 10))  # 30,000 <= 60,000 / 2
    assert keep and "/ 2 processes" in why and "decoded into memory" in why
    assert not decide_in_memory("auto", 101, (10, 10))[0]  # 30,300 > 30,000
    small_machine.setenv("LOCAL_WORLD_SIZE", "3")
    assert not decide_in_memory("auto", 100, (10, 10))[0]  # 30,000 > 20,000


def test_a_folder_opened_for_training_follows_the_share(small_machine, tmp_path, make_folder):
    root = make_folder(tmp_path / "photos")  # 36 images: 36 x 3 x 16 x 16 = 27,648 bytes at 16 px
    small_machine.setattr(folder, "physical_memory", lambda: 400_000)  # budget 40,000: fits alone, not halved
    assert open_dataset(str(root), in_memory="auto", size=16).in_memory
    small_machine.setenv("LOCAL_WORLD_SIZE", "2")
    assert not open_dataset(str(root), in_memory="auto", size=16).in_memory
