def test_the_cast_exists(ws, other):
    assert ws.memberships.count() == 3
    assert other.memberships.count() == 1
