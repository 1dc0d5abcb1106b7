"""The differential tests' report: the differences file is printed at the end
of the pytest run (terminal summary), whatever the outcome."""

import pytest

REPORT = pytest.StashKey[list]()


def pytest_configure(config):
    config.stash[REPORT] = []


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    for path, text in config.stash.get(REPORT, []):
        terminalreporter.section(f"differences pyd vs dockerd 20.10 ({path})")
        terminalreporter.write(text)
