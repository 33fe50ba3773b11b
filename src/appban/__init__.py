"""appban: enforce banned-app policies on the devices that read company mail."""

__version__ = "0.1.0"
