"""Auto top-up: a user's threshold and pack, the card saved by a Checkout, one
off-session PaymentIntent per crossing below the threshold. See docs/WEBHOOKS.md."""
