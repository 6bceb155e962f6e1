import mptest


def test_interpreter_runs():
    assert sum(range(4)) == 6


mptest.main(globals())
