"""Where object versions and change events come from; one module per source type."""
