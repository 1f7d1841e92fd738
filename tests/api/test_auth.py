import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from api.auth import (
    LOCAL_USER,
    InvalidUserName,
    UserExists,
    authenticate,
    create_user,
    get_or_create_user,
    hash_token,
    issue_token,
    list_tokens,
    local_user,
    revoke_token,
)
from api.jobstore import JobStoreError
from api.models import Token


def test_an_issued_token_authenticates_its_user(session, alice, bob):
    token_a, token_b = issue_token(session, alice), issue_token(session, bob)
    assert authenticate(session, token_a).name == "alice"
    assert authenticate(session, token_b).name == "bob"


def test_tokens_are_long_random_and_marked(session, alice):
    tokens = {issue_token(session, alice) for _ in range(3)}
    assert len(tokens) == 3
    assert all(t.startswith("adf_") and len(t) >= 4 + 43 for t in tokens)


def test_the_store_keeps_the_hash_and_a_prefix_never_the_token(session, alice):
    token = issue_token(session, alice)
    stored = session.scalars(select(Token)).one()
    assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest() == hash_token(token)
    assert stored.prefix == token[:12] and token.startswith(stored.prefix)
    dump = " ".join(str(v) for v in session.execute(text("SELECT * FROM tokens")).one())
    assert token not in dump


@pytest.mark.parametrize("presented", [None, "", "adf_not-a-real-token", "Bearer x"])
def test_missing_or_unknown_tokens_authenticate_nobody(session, alice, presented):
    issue_token(session, alice)
    assert authenticate(session, presented) is None


def test_a_revoked_token_authenticates_nobody(session, alice):
    token = issue_token(session, alice)
    kept = issue_token(session, alice)
    assert revoke_token(session, token[:12]) == 1
    assert authenticate(session, token) is None
    assert authenticate(session, kept).name == "alice"
    assert revoke_token(session, token[:12]) == 0  # already revoked


def test_a_token_can_be_revoked_by_its_full_value(session, alice):
    token = issue_token(session, alice)
    assert revoke_token(session, token) == 1
    assert authenticate(session, token) is None
    assert list_tokens(session)[0].revoked_at is not None


def test_last_used_at_is_written_at_most_once_a_minute(session, alice):
    token = issue_token(session, alice)
    row = session.scalars(select(Token)).one()
    assert row.last_used_at is None
    authenticate(session, token)
    first = row.last_used_at
    assert first is not None
    authenticate(session, token)
    assert row.last_used_at == first
    row.last_used_at = first - timedelta(minutes=2)
    session.commit()
    authenticate(session, token)
    assert row.last_used_at > first


@pytest.mark.parametrize("name", ["", "a b", "ünïcode", "x" * 65, "semi;colon"])
def test_user_names_are_checked(session, name):
    with pytest.raises(InvalidUserName, match="user name"):
        create_user(session, name)


def test_a_user_name_is_taken_once(session, alice):
    with pytest.raises(UserExists, match="'alice' already exists") as raised:
        create_user(session, "alice")
    assert isinstance(raised.value, JobStoreError)


def test_get_or_create_user_returns_the_existing_user_and_may_promote_it(session, alice):
    assert get_or_create_user(session, "alice").id == alice.id
    assert not alice.is_admin
    assert get_or_create_user(session, "alice", admin=True).is_admin
    assert get_or_create_user(session, "alice", admin=False).is_admin  # never demoted
    carol = get_or_create_user(session, "carol")
    assert carol.id != alice.id and not carol.is_admin


def test_the_local_user_is_one_admin(session):
    user = local_user(session)
    assert (user.name, user.is_admin) == (LOCAL_USER, True)
    assert local_user(session).id == user.id


def test_list_tokens_lists_every_users_tokens_oldest_first(session, alice, bob):
    issue_token(session, alice)
    issue_token(session, bob)
    issue_token(session, alice)
    assert [t.user.name for t in list_tokens(session)] == ["alice", "bob", "alice"]
    assert len(list_tokens(session, user=bob)) == 1
