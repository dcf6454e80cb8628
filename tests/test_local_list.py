"""The Local Authorization List's model (OCPP 1.6 §3.5.2, §5.10, §5.15, errata v4.0 §3.52)
and its place in the authorization decision (§3.5.3, §3.5.4), on a real SQLite file.

The property test drives random Full and Differential updates against a plain dict that
follows the spec's words; the power-cut test kills a process in the middle of an update.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ocpp.v16.enums import AuthorizationStatus, UpdateStatus

from chargepoint.model.authorization import AuthorizationCache, Authorizer, IdTagInfo
from chargepoint.model.local_list import ListUpdate, LocalAuthList
from chargepoint.storage import SCHEMA, open_state
from tests.harness import fresh_state, keys_on

ACCEPTED = IdTagInfo(AuthorizationStatus.accepted)
BLOCKED = IdTagInfo(AuthorizationStatus.blocked)


def full(version: int, **entries: IdTagInfo | None) -> ListUpdate:
    return ListUpdate(version, True, tuple(entries.items()))


def differential(version: int, **entries: IdTagInfo | None) -> ListUpdate:
    return ListUpdate(version, False, tuple(entries.items()))


def apply(local: LocalAuthList, update: ListUpdate, list_max: int = 100) -> UpdateStatus:
    return local.apply(update, list_max=list_max, send_max=50).status


@pytest.fixture
def db() -> sqlite3.Connection:
    return open_state(fresh_state())


def test_a_charge_point_without_a_list_has_version_0(db: sqlite3.Connection) -> None:
    local = LocalAuthList(db)
    assert local.version == 0 and len(local) == 0


def test_full_then_differential_add_update_delete(db: sqlite3.Connection) -> None:
    local = LocalAuthList(db)
    assert apply(local, full(3, A=ACCEPTED, B=ACCEPTED, C=BLOCKED)) is UpdateStatus.accepted
    assert local.version == 3
    update = differential(4, B=None, C=ACCEPTED, D=IdTagInfo(AuthorizationStatus.invalid))
    assert apply(local, update) is UpdateStatus.accepted
    assert local.version == 4
    assert local.entries() == {
        "A": ACCEPTED,
        "C": ACCEPTED,
        "D": IdTagInfo(AuthorizationStatus.invalid),
    }
    # A Full update replaces the list, whatever its version (only a Differential one must
    # be newer: §6.42 VersionMismatch).
    assert apply(local, full(2, E=ACCEPTED)) is UpdateStatus.accepted
    assert local.entries() == {"E": ACCEPTED} and local.version == 2


def test_tc_043_2_an_older_or_equal_differential_version_is_a_mismatch(
    db: sqlite3.Connection,
) -> None:
    local = LocalAuthList(db)
    assert apply(local, full(2, A=ACCEPTED)) is UpdateStatus.accepted
    assert apply(local, differential(5, B=ACCEPTED)) is UpdateStatus.accepted
    for version in (4, 5):
        assert apply(local, differential(version, C=ACCEPTED)) is UpdateStatus.version_mismatch
    assert local.version == 5 and set(local.entries()) == {"A", "B"}


def test_tc_042_2_an_empty_list_has_version_0_whatever_the_update_said(
    db: sqlite3.Connection,
) -> None:
    local = LocalAuthList(db)
    assert apply(local, full(1)) is UpdateStatus.accepted
    assert local.version == 0
    assert apply(local, full(7, A=ACCEPTED)) is UpdateStatus.accepted
    assert apply(local, differential(8, A=None)) is UpdateStatus.accepted
    assert (local.version, len(local)) == (0, 0)


@pytest.mark.parametrize("version", [0, -1, -7])
def test_errata_3_52_versions_0_and_minus_1_are_refused(
    db: sqlite3.Connection, version: int
) -> None:
    local = LocalAuthList(db)
    apply(local, full(3, A=ACCEPTED))
    outcome = local.apply(full(version, B=ACCEPTED), list_max=100, send_max=50)
    assert outcome.status is UpdateStatus.failed and "reserved" in (outcome.reason or "")
    assert local.entries() == {"A": ACCEPTED} and local.version == 3


def test_a_full_update_entry_without_idtaginfo_fails(db: sqlite3.Connection) -> None:
    """§7.1: idTagInfo is "Required when UpdateType is Full"."""
    local = LocalAuthList(db)
    outcome = local.apply(full(1, A=ACCEPTED, B=None), list_max=100, send_max=50)
    assert outcome.status is UpdateStatus.failed and "no idTagInfo" in str(outcome.reason)
    assert len(local) == 0


def test_too_many_entries_or_a_too_long_list_fails_and_changes_nothing(
    db: sqlite3.Connection,
) -> None:
    local = LocalAuthList(db)
    apply(local, full(1, A=ACCEPTED, B=ACCEPTED))
    many = full(2, **{f"T{n}": ACCEPTED for n in range(51)})
    outcome = local.apply(many, list_max=100, send_max=50)
    assert outcome.status is UpdateStatus.failed and "SendLocalListMaxLength 50" in str(outcome)
    # Within SendLocalListMaxLength, but the list afterwards would be too long.
    outcome = local.apply(differential(2, C=ACCEPTED, D=ACCEPTED), list_max=3, send_max=50)
    assert outcome.status is UpdateStatus.failed and "LocalAuthListMaxLength 3" in str(outcome)
    assert local.entries() == {"A": ACCEPTED, "B": ACCEPTED} and local.version == 1
    # Deleting one makes room: the limit is on the list afterwards, not on the update.
    update = differential(2, A=None, C=ACCEPTED)
    assert local.apply(update, list_max=2, send_max=50).status is UpdateStatus.accepted


def test_idtags_are_case_insensitive(db: sqlite3.Connection) -> None:
    """IdToken is a CiString20 (§7.30): one idTag however it is written."""
    local = LocalAuthList(db)
    update = ListUpdate(1, True, (("card-a", ACCEPTED), ("CARD-A", BLOCKED)))
    outcome = local.apply(update, list_max=100, send_max=50)
    assert outcome.status is UpdateStatus.failed and "twice" in str(outcome.reason)
    apply(local, full(1, **{"card-a": ACCEPTED}))
    assert local.lookup("CARD-A") == ACCEPTED
    apply(local, differential(2, **{"Card-A": BLOCKED}))
    assert local.entries() == {"Card-A": BLOCKED}
    apply(local, differential(3, **{"CARD-A": None}))
    assert len(local) == 0


def test_the_handler_arguments_are_read_as_the_ocpp_library_hands_them() -> None:
    update = ListUpdate.from_request(
        4,
        "Differential",
        [
            {
                "id_tag": "A",
                "id_tag_info": {
                    "status": "Blocked",
                    "expiry_date": "2030-01-01T00:00:00Z",
                    "parent_id_tag": "P",
                },
            },
            {"id_tag": "B"},
        ],
    )
    blocked = IdTagInfo(AuthorizationStatus.blocked, "2030-01-01T00:00:00Z", "P")
    assert update == ListUpdate(4, False, (("A", blocked), ("B", None)))
    assert ListUpdate.from_request(1, "Full", None) == ListUpdate(1, True, ())


def test_the_list_survives_reopening_the_database() -> None:
    state = fresh_state()
    local = LocalAuthList(open_state(state))
    apply(local, full(9, A=ACCEPTED))
    again = LocalAuthList(open_state(state))
    assert again.version == 9 and again.entries() == {"A": ACCEPTED}


# -- a power cut in the middle of an update --

POWER_CUT = textwrap.dedent(
    """
    import os, sys
    from chargepoint.model.authorization import IdTagInfo
    from chargepoint.model.local_list import LocalAuthList, ListUpdate
    from chargepoint.storage import SCHEMA, open_state
    from ocpp.v16.enums import AuthorizationStatus

    db = open_state(sys.argv[1])
    written = 0

    def statement(sql):
        # The power goes at the 6,000th idTag written of a Full update of 10,000: the old
        # list is deleted and 5,999 new ones are in, none of it committed.
        global written
        if sql.startswith("INSERT INTO local_list "):
            written += 1
            if written == 6000:
                os._exit(9)

    db.set_trace_callback(statement)
    info = IdTagInfo(AuthorizationStatus.accepted)
    update = ListUpdate(8, True, tuple((f"NEW{n:05}", info) for n in range(10_000)))
    LocalAuthList(db).apply(update, list_max=10_000, send_max=10_000)
    """
)


def test_a_power_cut_in_the_middle_of_an_update_leaves_the_old_list_whole() -> None:
    state = fresh_state()
    local = LocalAuthList(open_state(state))
    old = {f"OLD{n:05}": ACCEPTED for n in range(3000)}
    assert local.apply(full(7, **old), list_max=10_000, send_max=10_000).status.value == "Accepted"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    process = subprocess.run(
        [sys.executable, "-c", POWER_CUT, str(state)], env=env, capture_output=True, check=False
    )
    assert process.returncode == 9, process.stderr.decode()  # cut at the 6,000th INSERT
    after = LocalAuthList(open_state(state))
    assert after.version == 7
    assert after.entries() == old


def test_a_list_of_10000_entries_is_applied_whole(db: sqlite3.Connection) -> None:
    local = LocalAuthList(db)
    entries = {f"TAG{n:05}": ACCEPTED for n in range(10_000)}
    outcome = local.apply(full(1, **entries), list_max=10_000, send_max=10_000)
    assert outcome.status is UpdateStatus.accepted
    assert len(local) == 10_000 and local.lookup("TAG09999") == ACCEPTED


# -- the property: any sequence of updates gives what the spec's words give --

id_tags = st.sampled_from(["A", "b", "B", "c", "D", "e", "F", "g"])
infos = st.one_of(
    st.none(),
    st.builds(
        IdTagInfo,
        st.sampled_from(list(AuthorizationStatus)),
        st.sampled_from([None, "2030-01-01T00:00:00Z", "2000-01-01T00:00:00Z"]),
        st.sampled_from([None, "PARENT"]),
    ),
)
updates = st.builds(
    ListUpdate,
    st.integers(min_value=-2, max_value=12),
    st.booleans(),
    st.lists(st.tuples(id_tags, infos), max_size=6).map(tuple),
)


def reference(
    entries: dict[str, IdTagInfo], version: int, update: ListUpdate, list_max: int, send_max: int
) -> tuple[UpdateStatus, dict[str, IdTagInfo], int]:
    """The spec read plainly; keys are case-folded idTags."""
    folded = [tag.casefold() for tag, _ in update.entries]
    if (
        update.version <= 0
        or len(update.entries) > send_max
        or len(set(folded)) < len(folded)
        or (update.full and any(info is None for _, info in update.entries))
    ):
        return UpdateStatus.failed, entries, version
    if not update.full and update.version <= version:
        return UpdateStatus.version_mismatch, entries, version
    after = {} if update.full else dict(entries)
    for tag, info in update.entries:
        if info is None:
            after.pop(tag.casefold(), None)
        else:
            after[tag.casefold()] = info
    if len(after) > list_max:
        return UpdateStatus.failed, entries, version
    return UpdateStatus.accepted, after, update.version if after else 0


@pytest.mark.property
@pytest.mark.timeout(1200)  # make fuzz: 20,000 examples take minutes
@given(st.lists(updates, max_size=12))
def test_any_sequence_of_updates_gives_the_reference_list(sequence: list[ListUpdate]) -> None:
    db = sqlite3.connect(":memory:", isolation_level=None)  # the same schema, no fsync per example
    db.executescript(SCHEMA)
    local = LocalAuthList(db)
    expected: dict[str, IdTagInfo] = {}
    version = 0
    for update in sequence:
        status, expected, version = reference(expected, version, update, 5, 4)
        assert local.apply(update, list_max=5, send_max=4).status is status
        assert {tag.casefold(): info for tag, info in local.entries().items()} == expected
        assert local.version == version


# -- the list in the authorization decision --


def authorizer(db: sqlite3.Connection, **keys: str) -> tuple[Authorizer, LocalAuthList, list[Any]]:
    local = LocalAuthList(db)
    conflicts: list[Any] = []
    specs = keys_on(db, **keys)
    policy = Authorizer(specs, AuthorizationCache(db), local, lambda *c: conflicts.append(c))
    return policy, local, conflicts


async def test_the_list_has_priority_over_the_cache_and_listed_tags_stay_out_of_it(
    db: sqlite3.Connection,
) -> None:
    policy, local, conflicts = authorizer(db, LocalPreAuthorize="true")
    apply(local, full(1, A=BLOCKED, B=ACCEPTED))
    policy.cache.update("A", ACCEPTED)  # from before the list came
    assert policy.local("A") == (BLOCKED, "local list")
    asked: list[str] = []

    async def csms(action: str, payload: dict[str, Any]) -> dict[str, Any]:
        asked.append(payload["idTag"])
        return {"idTagInfo": {"status": "Accepted"}}

    # Pre-authorized from the list: no Authorize.req.
    assert await policy.authorize("B", csms) == ACCEPTED and asked == []
    # A blocked listed idTag is asked about online; the answer is not cached, and the CSMS
    # disagreeing with the list is a LocalListConflict (§3.5.2).
    assert await policy.authorize("A", csms) == ACCEPTED and asked == ["A"]
    assert policy.cache.lookup("A") == ACCEPTED  # the old entry, untouched
    assert conflicts == [("A", BLOCKED, ACCEPTED)]
    policy.remember("B", IdTagInfo(AuthorizationStatus.concurrent_tx))  # still valid: no conflict
    assert len(conflicts) == 1 and policy.cache.lookup("B") is None


def test_offline_the_list_decides_and_unknown_id_rules_do_not_override_it(
    db: sqlite3.Connection,
) -> None:
    policy, local, _ = authorizer(db, AllowOfflineTxForUnknownId="true")
    expired = IdTagInfo(AuthorizationStatus.accepted, "2000-01-01T00:00:00Z")
    apply(local, full(1, A=ACCEPTED, B=BLOCKED, C=expired))
    assert policy.offline("A", *policy.local("A")).accepted
    # §3.5.4: listed idTags not Accepted, or apparently expired, "MUST be rejected".
    assert policy.offline("B", *policy.local("B")).status is AuthorizationStatus.blocked
    assert policy.offline("C", *policy.local("C")).status is AuthorizationStatus.expired
    assert policy.offline("UNKNOWN", *policy.local("UNKNOWN")).accepted


def test_a_disabled_list_is_kept_but_not_consulted(db: sqlite3.Connection) -> None:
    policy, local, _ = authorizer(db, LocalAuthListEnabled="false")
    apply(local, full(1, A=ACCEPTED))
    assert policy.local("A") == (None, "cache")
    assert len(local) == 1
