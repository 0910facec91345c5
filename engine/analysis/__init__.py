"""Map analyses: change between two periods, area estimation from a reference sample, quicklooks."""
