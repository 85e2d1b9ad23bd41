"""Model allowlists: a user's own list wins, else the union of their groups' lists, else any model."""

from addon.config import ModelAllowlists, User, parse_config
from addon.policy.models import ModelPolicy

USERS = (User(name="alice", token_hash="x", groups=("eng", "ml")), User(name="bob", token_hash="x", groups=("eng",)))
LISTS = ModelAllowlists(
    users=(("carol", ("gpt-4.1",)),),
    groups=(("eng", ("claude-sonnet-*",)), ("ml", ("gpt-4.1*", "claude-sonnet-*"))),
)


def test_a_users_groups_lists_are_united() -> None:
    policy = ModelPolicy(LISTS, USERS)
    assert policy.allowed("alice") == ("claude-sonnet-*", "gpt-4.1*")
    assert policy.refusal("alice", "gpt-4.1-mini") is None
    assert policy.refusal("alice", "claude-sonnet-4-5") is None
    refused = policy.refusal("bob", "gpt-4.1")
    assert refused is not None and refused.status == 403
    assert refused.message == "model gpt-4.1 is not allowed for bob: allowed are claude-sonnet-*"


def test_a_users_own_list_wins_and_others_may_call_anything() -> None:
    users = (*USERS, User(name="carol", token_hash="x", groups=("eng",)))
    policy = ModelPolicy(LISTS, users)
    assert policy.refusal("carol", "claude-sonnet-4-5") is not None  # her own list, not her group's
    assert policy.refusal("carol", "gpt-4.1") is None
    assert policy.allowed("dave") is None and policy.refusal("dave", "anything-at-all") is None
    assert policy.allowed("anonymous") is None


def test_patterns_match_the_whole_name_case_sensitively_and_a_missing_model_is_refused() -> None:
    policy = ModelPolicy(LISTS, USERS)
    assert policy.refusal("bob", "my-claude-sonnet-4-5") is not None
    assert policy.refusal("bob", "CLAUDE-SONNET-4-5") is not None
    missing = policy.refusal("bob", None)
    assert missing is not None and "(none given)" in missing.message


def test_the_toml_table() -> None:
    config = parse_config({"allowed_models": {"users": {"alice": ["claude-*"]}, "groups": {"eng": ["gpt-*"]}}})
    assert config.allowed_models == ModelAllowlists(users=(("alice", ("claude-*",)),), groups=(("eng", ("gpt-*",)),))


def test_every_model_a_request_names_must_be_allowed() -> None:
    policy = ModelPolicy(LISTS, USERS)
    assert policy.refusal("bob", "claude-sonnet-4-5", None) is None
    path_named = policy.refusal("bob", "gpt-5-prod", "claude-sonnet-4-5")  # the path serves another model
    assert path_named is not None and "gpt-5-prod is not allowed" in path_named.message
    assert policy.refusal("bob", None, None) is not None
