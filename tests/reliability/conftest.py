"""Fixtures of the reliability suite: the session's :class:`ledger.Ledger` and its report."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ledger import Ledger, report_path

_LEDGER = Ledger()


@pytest.fixture
def ledger(request: pytest.FixtureRequest) -> Iterator[Ledger]:
    """The session's ledger; rows taken during this test are attributed to it."""
    _LEDGER.current_test = request.node.nodeid
    yield _LEDGER
    _LEDGER.current_test = ""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        _LEDGER.mark_failed(item.nodeid)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _LEDGER.rows:
        _LEDGER.write(report_path())


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _LEDGER.rows:
        terminalreporter.write_sep("=", f"reliability ledger ({report_path()})")
        terminalreporter.write(_LEDGER.markdown())
