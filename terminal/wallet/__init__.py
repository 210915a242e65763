"""The pretix wallet "PointOfSale API" client and its typed outcomes."""
