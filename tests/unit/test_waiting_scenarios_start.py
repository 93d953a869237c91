"""Only a test on the shared stack starts the waiting scenarios (``tests/integration/conftest.py``).

Under ``make test`` each xdist worker collects every test, so a session-wide start made the worker running the
tests with an Airflow of their own bring up a second shared stack and its four scenarios, for nobody. Here the
integration conftest runs as a plugin with the stack and scenarios replaced by fakes that say when they start.
"""

from __future__ import annotations

import textwrap

import pytest

pytest_plugins = ["pytester"]

CONFTEST = textwrap.dedent(
    """
    from pathlib import Path

    import pytest

    pytest_plugins = ["tests.integration.conftest"]


    def say(event):
        with (Path(__file__).parent / "events.txt").open("a") as log:
            log.write(event + "\\n")


    @pytest.fixture(scope="session")
    def airflow_stack():
        say("START airflow_stack")
        return "stack"


    def _fake(name):
        def fixture(airflow_stack):
            say(f"START {name}")
            return name

        return pytest.fixture(scope="session", name=name)(fixture)


    quickstart_run = _fake("quickstart_run")
    batch_run = _fake("batch_run")
    kube_training = _fake("kube_training")
    deferral_scenario = _fake("deferral_scenario")
    """
)

TESTS = textwrap.dedent(
    """
    from conftest import say


    def test_with_an_airflow_of_its_own():
        say("RUN own")


    def test_on_the_shared_stack(airflow_stack):
        say("RUN shared")


    def test_collecting_two_scenarios(quickstart_run, deferral_scenario):
        say("RUN collect")
    """
)


@pytest.fixture
def suite(pytester: pytest.Pytester, request: pytest.FixtureRequest) -> pytest.Pytester:
    pytester.syspathinsert(request.config.rootpath)  # `tests.integration.conftest` from this checkout
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_scenarios=TESTS)
    return pytester


def _events(suite: pytest.Pytester) -> list[str]:
    return (suite.path / "events.txt").read_text().splitlines()


def test_a_test_without_the_shared_stack_starts_nothing_though_later_tests_need_the_scenarios(
    suite: pytest.Pytester,
) -> None:
    result = suite.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:asyncio")
    result.assert_outcomes(passed=3)
    assert _events(suite) == [
        "RUN own",
        "START airflow_stack",
        "START quickstart_run",  # only the scenarios some selected test collects, in WAITING_SCENARIOS order
        "START deferral_scenario",
        "RUN shared",
        "RUN collect",
    ]


def test_no_scenario_starts_when_no_selected_test_collects_one(suite: pytest.Pytester) -> None:
    result = suite.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:asyncio", "-k", "not collecting")
    result.assert_outcomes(passed=2, deselected=1)
    assert _events(suite) == ["RUN own", "START airflow_stack", "RUN shared"]
