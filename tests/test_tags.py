"""Resource tags are validated before anything is queued or acquired."""

from __future__ import annotations

import pytest

import aura_nb as an


async def noop() -> None:
    return None


BAD_TAGS = [
    ("", "empty tag"),
    ("gpu:", "missing capacity"),
    (":3", "missing resource name"),
    ("gpu:0", "positive integer"),
    ("gpu:-1", "positive integer"),
    ("gpu:x", "positive integer"),
    ("gpu:1.5", "positive integer"),
    ("g pu:1", "not valid"),
    ("gpu:1:2", "positive integer"),
    ("gpu:²", "positive integer"),
]


@pytest.mark.parametrize(("tag", "why"), BAD_TAGS)
def test_bad_tag_is_refused_with_a_clear_message(tag: str, why: str) -> None:
    with pytest.raises(an.ResourceTagError, match=why) as info:
        an.Tasklet(noop, resource_tags=[tag])
    assert repr(tag) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_same_resource_twice_in_one_tasklet() -> None:
    with pytest.raises(an.ResourceTagError, match="tagged twice"):
        an.Tasklet(noop, resource_tags=["gpu:1", "gpu:1"])
    with pytest.raises(an.ResourceTagError, match="tagged twice"):
        an.Tasklet(noop, resource_tags=["gpu:1", "gpu"])


def test_a_single_string_is_not_a_list_of_tags() -> None:
    with pytest.raises(an.TaskletError, match="must be a list"):
        an.Tasklet(noop, resource_tags="gpu:1")


def test_non_string_tag() -> None:
    with pytest.raises(an.ResourceTagError, match="must be a string"):
        an.Tasklet(noop, resource_tags=[3])


@pytest.mark.anyio
async def test_contradicting_capacity_is_refused_and_nothing_changes() -> None:
    async with an.ExecutionManager(max_concurrency=2, capacities={"gpu": 1}) as em:
        before = em.statistics()
        with pytest.raises(an.ResourceTagError, match=r"capacity 2 contradicts the capacity 1 of 'gpu'.*capacities="):
            await em.submit(an.Tasklet(noop, resource_tags=["gpu:2"]))
        after = em.statistics()
        assert after.resources == before.resources
        assert after.global_limit == before.global_limit
        assert len(em.events) == 0  # nothing was submitted


@pytest.mark.anyio
async def test_first_tag_declares_and_later_tags_must_agree() -> None:
    async with an.ExecutionManager() as em:
        await em.submit(an.Tasklet(noop, resource_tags=["api_key_A:5"]))
        assert em.capacities == {"api_key_A": 5}
        await em.submit(an.Tasklet(noop, resource_tags=["api_key_A"]))  # bare: the declared capacity
        with pytest.raises(an.ResourceTagError, match=r"declared by tag 'api_key_A:5'"):
            await em.submit(an.Tasklet(noop, resource_tags=["api_key_A:3"]))


@pytest.mark.anyio
async def test_bare_tag_without_declared_capacity() -> None:
    async with an.ExecutionManager() as em:
        with pytest.raises(an.ResourceTagError, match=r"no capacity is declared for 'gpu'"):
            await em.submit(an.Tasklet(noop, resource_tags=["gpu"]))
        assert em.capacities == {}


@pytest.mark.anyio
async def test_a_failed_validation_declares_no_capacity() -> None:
    async with an.ExecutionManager() as em:
        with pytest.raises(an.TaskNotFoundError):
            await em.submit(an.Tasklet("nope/missing", resource_tags=["gpu:3"]))
        assert "gpu" not in em.capacities
        await em.submit(an.Tasklet(noop, resource_tags=["gpu:2"]))  # still free to declare 2
        assert em.capacities == {"gpu": 2}


@pytest.mark.anyio
async def test_set_capacity_is_the_deliberate_way() -> None:
    async with an.ExecutionManager(capacities={"gpu": 1}) as em:
        em.set_capacity("gpu", 3)
        assert em.statistics().resources["gpu"].capacity == 3
        await em.submit(an.Tasklet(noop, resource_tags=["gpu:3"]))
        with pytest.raises(an.ResourceTagError, match=r"set_capacity\(\)"):
            await em.submit(an.Tasklet(noop, resource_tags=["gpu:1"]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"max_concurrency": 2.5}, "positive integer"),
        ({"max_concurrency": True}, "positive integer"),
        ({"capacities": {"gpu": 0}}, r"capacities\['gpu'\]"),
        ({"capacities": {"g pu": 1}}, "not valid"),
        ({"capacities": ["gpu"]}, "must be a mapping"),
    ],
)
def test_manager_arguments_are_validated(kwargs: dict, match: str) -> None:
    # Capacities are resource-tag errors; the global limit and the argument's type are argument errors.
    with pytest.raises((an.ResourceTagError, an.ArgumentError), match=match) as info:
        an.ExecutionManager(**kwargs)
    assert isinstance(info.value, an.AuraError) and isinstance(info.value, ValueError)


def test_set_capacity_validates() -> None:
    em = an.ExecutionManager()
    with pytest.raises(an.ResourceTagError, match="positive integer"):
        em.set_capacity("gpu", 0)
    with pytest.raises(an.ResourceTagError, match="not valid"):
        em.set_capacity("", 1)
