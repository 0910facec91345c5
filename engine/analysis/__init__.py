"""Map analyses: change between two periods, sampling designs and design-based estimators for accuracy and
area, quicklooks."""
