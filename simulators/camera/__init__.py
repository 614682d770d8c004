"""A simulated ONVIF camera: device, media and events services over real HTTP/SOAP."""
