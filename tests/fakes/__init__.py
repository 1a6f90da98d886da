"""Protocol-faithful fakes (ComfyUI, Discord) that run on loopback for the tests."""
