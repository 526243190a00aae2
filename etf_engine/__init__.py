"""etf-engine: exact NAV, basket and in-kind dealing for virtual-asset spot ETFs."""

__version__ = "0.1.0"
