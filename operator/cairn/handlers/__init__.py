"""kopf wiring only: settings in one startup handler, watch events handed to the controller."""
