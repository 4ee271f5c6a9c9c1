"""rapp-edge agent: scores robot motor currents with RaPP and publishes alarms.

The agent package is what runs on the edge box. It must import and run with only the
small runtime dependencies (numpy, onnxruntime, paho-mqtt, pyserial, cryptography):
never import torch, onnx or tensorflow from here.
"""

__version__ = "0.1.0"
