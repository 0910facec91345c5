"""Map analyses: sampling designs and design-based estimators for accuracy and area."""
