"""ri-gateway: the application around the MLLP listener, the mappings and the engine.

Configuration (:mod:`gateway.config`), the inbound path (:mod:`gateway.receiver`,
:mod:`gateway.ack_policy`), the audit log (:mod:`gateway.audit`), analysis off the
reactor thread (:mod:`gateway.analysis`, :mod:`gateway.pipeline`), the services
(:mod:`gateway.service`) and the command line (:mod:`gateway.cli`).
"""
