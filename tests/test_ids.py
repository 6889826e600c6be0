"""Job ids are checked against an allow-list before they can reach a URL."""

from __future__ import annotations

import pytest

from finetune_ops import InvalidJobIdError
from finetune_ops._ids import check_job_id, check_job_ids


@pytest.mark.parametrize(
    "job_id", ["ft-abc", "ft-3b2c1d4e-0000-4a4a-9999-0123456789ab", "ft-A_b-9", "ft-" + "x" * 125]
)
def test_valid_ids(job_id: str) -> None:
    """Ids of the documented shape pass unchanged."""
    assert check_job_id(job_id) == job_id


@pytest.mark.parametrize(
    "job_id",
    [
        "",
        "ft-",
        "abc",
        "FT-abc",
        "ft-../../admin",
        "ft-..",
        "..",
        "ft-a/b",
        "ft-a?b=c",
        "ft-a#b",
        "ft-a%2Fb",
        "ft-a b",
        " ft-abc",
        "ft-abc\n",
        "ft-a\rb",
        "ft-a\x00",
        "ft-é",
        "ft-" + "x" * 126,
    ],
)
def test_invalid_ids(job_id: str) -> None:
    """Traversal, queries, encoded slashes, whitespace and control characters are refused."""
    with pytest.raises(InvalidJobIdError) as info:
        check_job_id(job_id)
    assert info.value.job_id == job_id
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("job_id", [None, 42, b"ft-abc", ["ft-abc"]])
def test_non_string_ids(job_id: object) -> None:
    """Anything that is not a str is refused with a message naming its type."""
    with pytest.raises(InvalidJobIdError, match="must be a str"):
        check_job_id(job_id)


def test_batch_is_checked_whole() -> None:
    """One bad id in a batch fails the check; a bare string is not taken for a batch."""
    assert check_job_ids(["ft-a", "ft-b"]) == ["ft-a", "ft-b"]
    with pytest.raises(InvalidJobIdError):
        check_job_ids(["ft-a", "ft-../x"])
    with pytest.raises(TypeError):
        check_job_ids("ft-a")
