"""The Redis databases the tests use: each is claimed by one test at a time, across concurrent test runs."""
from __future__ import annotations

from contextlib import ExitStack

import pytest
import redis

pytestmark = pytest.mark.service


def test_a_redis_database_is_never_handed_out_twice_while_it_is_claimed(redis_url, claim_redis_database):
    # Two test runs (or, here, one test holding several claims) may pick a database before either has
    # written to it: nothing is written here at all, so an "is it empty?" check alone would hand the same
    # database out again. The fifteen databases are all claimed after at most fifteen claims (fewer when
    # another run holds some), so a sixteenth must fail.
    held = [redis_url]
    with ExitStack() as claims:
        for _ in range(15):
            try:
                held.append(claims.enter_context(claim_redis_database()))
            except LookupError:
                break
        else:
            pytest.fail(f"16 claims on 15 databases succeeded: {sorted(held)}")
        assert len(set(held)) == len(held), sorted(held)
    # Released again (and flushed) at the end of the block: the next claims find the databases free.
    with claim_redis_database() as again:
        client = redis.Redis.from_url(again)
        try:
            assert client.dbsize() == 0
        finally:
            client.close()
