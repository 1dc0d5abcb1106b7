"""Shared test setup. Integration tests take the daemon command from PYD_CMD
(default: this checkout's pyd.py under the running Python). tests/ is a
package, so pytest puts the checkout on sys.path and `pyd` and
`tests.pydtest` import as they are."""
