"""The one outbox: durable records per destination, one delivery loop each, typed answers and settling."""
