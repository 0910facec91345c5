"""Parcel maps: parcels (a parcel register) classified from pixel predictions or per-parcel features."""
