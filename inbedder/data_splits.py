"""Which data training must never see: shared by training (which leaves it out) and evaluation (which
measures transfer on it), so the two can't disagree."""

HELD_OUT_DOMAINS = ("Homes", "RideSharing", "Alarm", "Trains")  # SGD domains training never sees
