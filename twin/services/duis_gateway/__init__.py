"""The DUIS front door: DCC User adapters speak signed DUIS XML over HTTPS to the same DCC logic
(twin.services.dcc.DccCore) the gRPC API calls. `wire` parses and builds DUIS messages (lxml),
`signing` signs and verifies them (W3C XML Signature, ECDSA P-256, signxml), `pki` issues a test
PKI, `delivery` POSTs device responses and alerts to each User's receive URL, `gateway` maps DUIS
onto the DCC and `app` serves the three endpoints (FastAPI)."""
