"""Device drivers: they read devices and emit observations; they know nothing of MQTT."""
