"""``python -m knit_simulator``: see ``server.main``."""

from knit_simulator.server import main

main()
