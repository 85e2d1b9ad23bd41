"""Model allowlists: which models a user may call, as glob patterns (`claude-sonnet-*`). A user's own list wins;
else the union of their groups' lists; a user with neither (and anonymous callers) may call any model."""

from collections.abc import Sequence
from fnmatch import fnmatchcase

from addon.config import ModelAllowlists, User
from addon.policy import Refusal


class ModelPolicy:
    def __init__(self, lists: ModelAllowlists, users: Sequence[User]) -> None:
        self._own = dict(lists.users)
        self._groups = dict(lists.groups)
        self._member_of = {u.name: u.groups for u in users}

    def allowed(self, user: str) -> tuple[str, ...] | None:
        """The patterns `user` may call; None: any model."""
        if user in self._own:
            return self._own[user]
        lists = [self._groups[g] for g in self._member_of.get(user, ()) if g in self._groups]
        return tuple(dict.fromkeys(p for patterns in lists for p in patterns)) if lists else None

    def refusal(self, user: str, *models: str | None) -> Refusal | None:
        """A 403 for the first of `models` (a request may name one in its path and one in its body) `user` may not
        call; a request that names none counts as not allowed."""
        patterns = self.allowed(user)
        if patterns is None:
            return None
        for model in [m for m in models if m] or [None]:
            if not model or not any(fnmatchcase(model, p) for p in patterns):
                allowed = ", ".join(patterns)
                return Refusal(403, f"model {model or '(none given)'} is not allowed for {user}: allowed are {allowed}")
        return None
