"""Rate-limit buckets shared by a fleet: `aibridge_take` and `aibridge_give` in PostgreSQL (row locks taken in
key order), refilled by the database's clock, so every proxy sees the same levels."""

from addon.fleet.state import SharedState, SharedUnavailable
from addon.policy.ratelimits import BucketsUnavailable, Draw


class SharedBuckets:
    def __init__(self, state: SharedState) -> None:
        self.state = state

    async def take(self, draws: list[Draw]) -> float:
        draws = sorted(draws, key=lambda d: d.key)
        try:
            ((wait,),) = await self.state.call(
                "SELECT aibridge_take(%s::TEXT[], %s::FLOAT8[], %s::FLOAT8[], %s::FLOAT8[])",
                [[d.key for d in draws], [d.capacity for d in draws], [d.need for d in draws], [d.take for d in draws]],
            )
        except SharedUnavailable as e:
            raise BucketsUnavailable(str(e)) from None
        return float(wait)

    async def give(self, draws: list[Draw]) -> None:
        draws = sorted(draws, key=lambda d: d.key)
        try:
            await self.state.call(
                "SELECT aibridge_give(%s::TEXT[], %s::FLOAT8[], %s::FLOAT8[])",
                [[d.key for d in draws], [d.capacity for d in draws], [d.take for d in draws]],
            )
        except SharedUnavailable as e:
            raise BucketsUnavailable(str(e)) from None
