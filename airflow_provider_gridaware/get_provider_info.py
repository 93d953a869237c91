"""Provider metadata for Airflow's ProvidersManager (entry point ``apache_airflow_provider``).

Plain data only: Airflow reads this on every start, so nothing here imports a hook.
"""

from __future__ import annotations

from typing import Any

_PKG = "airflow_provider_gridaware"

_HTTP_FIELDS: dict[str, dict[str, Any]] = {
    "timeout": {"label": "Read timeout (s)", "schema": {"type": ["number", "null"], "default": 30}},
    "connect_timeout": {"label": "Connect timeout (s)", "schema": {"type": ["number", "null"], "default": 5}},
    "verify_ssl": {
        "label": "Verify TLS",
        "schema": {"type": ["string", "null"], "default": "true"},
        "description": "true, false, or the path of a CA bundle file",
    },
    "max_attempts": {"label": "Attempts per call", "schema": {"type": ["integer", "null"], "default": 4}},
    "circuit_failure_threshold": {
        "label": "Failed calls before the circuit opens",
        "schema": {"type": ["integer", "null"], "default": 5},
    },
    "test_zone": {
        "label": "Zone for 'Test connection'",
        "schema": {"type": ["string", "null"]},
    },
}


def _connection_type(
    conn_type: str,
    module: str,
    cls: str,
    name: str,
    *,
    fields: dict[str, dict[str, Any]] | None = None,
    hidden: list[str],
    relabeling: dict[str, str],
    placeholders: dict[str, str],
    http: bool = True,
) -> dict[str, Any]:
    if conn_type in EVENT_CONNECTION_TYPES:
        fields = {**(fields or {}), "zones": _ZONES_FIELD}
    return {
        "connection-type": conn_type,
        "hook-class-name": f"{_PKG}.hooks.{module}.{cls}",
        "hook-name": name,
        "conn-fields": {**(fields or {}), **(_HTTP_FIELDS if http else {})},
        "ui-field-behaviour": {
            "hidden-fields": hidden,
            "relabeling": relabeling,
            "placeholders": placeholders,
        },
    }


def _str_field(
    label: str, description: str | None = None, default: str | None = None, enum: list[str] | None = None
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": ["string", "null"]}
    if default is not None:
        schema["default"] = default
    if enum:
        schema["enum"] = enum
    field: dict[str, Any] = {"label": label, "schema": schema}
    if description:
        field["description"] = description
    return field


_ZONES_FIELD: dict[str, Any] = {
    "label": "Grid zones",
    "schema": {"type": ["string", "null"]},
    "description": "comma list of the grid zones these events apply to (an event price overlays their price series)",
}

#: demand-response connection types (their hooks are GridEventHooks, registered in hooks/grid_event_base.py).
EVENT_CONNECTION_TYPES = frozenset(
    {"gridaware_openadr2b", "gridaware_openadr3", "gridaware_ieee2030_5", "gridaware_webhook"}
)

CONNECTION_TYPES = [
    _connection_type(
        "gridaware_watttime",
        "watttime",
        "WattTimeHook",
        "Grid: WattTime v3",
        fields={
            "signal_type": _str_field("Signal type", "WattTime signal_type", default="co2_moer"),
        },
        hidden=["schema", "port", "extra"],
        relabeling={"host": "Base URL", "login": "Username", "password": "Password"},
        placeholders={"host": "https://api.watttime.org"},
    ),
    _connection_type(
        "gridaware_electricitymaps",
        "electricity_maps",
        "ElectricityMapsHook",
        "Grid: Electricity Maps v3",
        fields={
            "emission_factor_type": _str_field(
                "Emission factors",
                "lifecycle (default) or direct",
                default="lifecycle",
                enum=["lifecycle", "direct"],
            ),
        },
        hidden=["schema", "port", "login", "extra"],
        relabeling={"host": "Base URL", "password": "API token (auth-token)"},
        placeholders={"host": "https://api.electricitymap.org"},
    ),
    _connection_type(
        "gridaware_ukci",
        "ukci",
        "UKCarbonIntensityHook",
        "Grid: GB Carbon Intensity",
        hidden=["schema", "port", "login", "password", "extra"],
        relabeling={"host": "Base URL"},
        placeholders={"host": "https://api.carbonintensity.org.uk"},
    ),
    _connection_type(
        "gridaware_entsoe",
        "entsoe",
        "EntsoePriceHook",
        "Grid: ENTSO-E day-ahead prices",
        hidden=["schema", "port", "login", "extra"],
        relabeling={"host": "Base URL", "password": "Security token"},
        placeholders={"host": "https://web-api.tp.entsoe.eu"},
    ),
    _connection_type(
        "gridaware_rest",
        "rest",
        "GridRestHook",
        "Grid: custom REST/JSON source",
        fields={
            "auth_type": _str_field(
                "Auth",
                "none, api_key, bearer or oauth2_client_credentials",
                default="none",
                enum=["none", "api_key", "bearer", "oauth2_client_credentials"],
            ),
            "key_header": _str_field("API key header", "header that carries the key", default="X-API-Key"),
            "oauth2_url": _str_field("OAuth2 token URL", "client-credentials token endpoint"),
            "scope": _str_field("OAuth2 scope"),
            "client_auth": _str_field(
                "OAuth2 client authentication",
                "basic (HTTP Basic, RFC 6749) or form (client_id/client_secret in the body)",
                default="basic",
                enum=["basic", "form"],
            ),
            "kind": _str_field("Signal kind", default="carbon_intensity", enum=["carbon_intensity", "price"]),
            "metric": _str_field("Carbon metric", default="average", enum=["average", "marginal"]),
            "unit": _str_field("Unit", "e.g. gCO2eq/kWh, lbs/MWh, EUR/MWh, ct/kWh"),
            "currency": _str_field("Currency", "ISO 4217 code for prices"),
            "forecast_path": _str_field("Forecast path", "relative URL, may use {zone}, {start}, {end}"),
            "actual_path": _str_field("Actuals path", "relative URL, may use {zone}, {start}, {end}"),
            "records_path": _str_field(
                "Records path", "dotted path to the list of points in the JSON, e.g. data.points"
            ),
            "time_field": _str_field("Time field", default="time"),
            "end_field": _str_field("End field", "optional; else the spacing of points"),
            "value_field": _str_field("Value field", default="value"),
            "unit_field": _str_field("Unit field", "optional; dotted path to the unit in the JSON"),
            "timezone": _str_field("Timezone for naive times", "IANA name; naive times are refused without it"),
            "period_minutes": {
                "label": "Point length (min)",
                "schema": {"type": ["number", "null"]},
                "description": "optional, when there is no end field; else the spacing of points",
            },
            "issued_at_field": _str_field(
                "Issue time field", "optional; dotted path to the forecast's issue time; else the fetch time"
            ),
        },
        hidden=["schema", "port"],
        relabeling={"host": "Base URL", "login": "Client ID", "password": "API key / token / client secret"},
        placeholders={"host": "https://utility.example/api"},
    ),
    _connection_type(
        "gridaware_openadr3",
        "openadr3",
        "OpenADR3Hook",
        "Grid events: OpenADR 3 VTN",
        fields={
            "oauth2_url": _str_field(
                "OAuth2 token URL", "empty: asked of the VTN (GET /auth/server), else <VTN>/auth/token"
            ),
            "programs": _str_field("Programs to follow", "program names or ids, comma separated; empty: all"),
            "client_name": _str_field("Client name", "clientName of our subscriptions", default="gridaware"),
            "scope": _str_field("OAuth2 scope"),
            "client_auth": _str_field(
                "OAuth2 client authentication",
                "form (the spec's /auth/token body) or basic (HTTP Basic)",
                default="form",
                enum=["form", "basic"],
            ),
            "near_minutes": {
                "label": "Near window (min)",
                "schema": {"type": ["number", "null"], "default": 60},
                "description": "an event starting within this is 'near' (OpenADR 3 has no event status)",
            },
        },
        hidden=["schema", "port"],
        relabeling={"host": "VTN base URL", "login": "OAuth2 client id", "password": "OAuth2 client secret"},
        placeholders={"host": "https://vtn.example/openadr3/3.1.0"},
    ),
    _connection_type(
        "gridaware_replay",
        "replay",
        "GridReplayHook",
        "Grid: replay of CSV traces",
        fields={
            "kind": _str_field("Signal kind", default="carbon_intensity", enum=["carbon_intensity", "price"]),
            "metric": _str_field("Carbon metric", default="average", enum=["average", "marginal"]),
            "unit": _str_field("Unit", default="gCO2eq/kWh"),
            "currency": _str_field("Currency", "ISO 4217 code for prices"),
            "anchor": _str_field(
                "Anchor",
                "'now' replays the trace shifted to the present (looping); 'fixed' keeps its own times",
                default="now",
                enum=["now", "fixed"],
            ),
            "horizon_hours": {
                "label": "Forecast horizon (h)",
                "schema": {"type": ["number", "null"], "default": 48},
            },
            "forecast_error": {
                "label": "Forecast error at 24 h",
                "schema": {"type": ["number", "null"], "default": 0.05},
                "description": "fraction of the zone's typical value; 0 gives a perfect forecast",
            },
            "seed": {
                "label": "Forecast error seed",
                "schema": {"type": ["integer", "null"], "default": 0},
            },
        },
        hidden=["schema", "port", "login", "password"],
        relabeling={"host": "CSV file or folder (empty: bundled GB trace)"},
        placeholders={"host": "/data/traces/gb_ci.csv"},
        http=False,
    ),
    _connection_type(
        "gridaware_webhook",
        "webhook",
        "GridWebhookHook",
        "Grid events: signed webhook (relay)",
        fields={
            "auth_mode": _str_field(
                "Authentication",
                "hmac: HMAC-SHA256 signature with the shared secret; bearer: a token",
                "hmac",
                enum=["hmac", "bearer"],
            ),
            "tolerance_s": {"label": "Timestamp tolerance (s)", "schema": {"type": ["number", "null"], "default": 300}},
            "max_body_bytes": {
                "label": "Largest body (bytes)",
                "schema": {"type": ["integer", "null"], "default": 262144},
            },
            "openadr3_conn_id": _str_field(
                "OpenADR 3 connection", "notifications on /openadr3/<this id> are stored as that connection's events"
            ),
            "require_delivery_id": {
                "label": "Require a delivery id (bearer mode)",
                "schema": {"type": ["boolean", "null"], "default": False},
            },
            "signature_header": _str_field("Signature header", "carries sha256=<hex>", "X-Gridaware-Signature"),
            "timestamp_header": _str_field("Timestamp header", "carries unix seconds", "X-Gridaware-Timestamp"),
            "delivery_header": _str_field("Delivery id header", "a unique id per delivery", "X-Gridaware-Delivery"),
        },
        hidden=["schema", "port", "login", "host", "extra"],
        relabeling={"password": "Shared secret (or bearer token)"},
        placeholders={},
        http=False,
    ),
    _connection_type(
        "gridaware_openadr2b",
        "openadr2b",
        "OpenADR2bHook",
        "Grid: OpenADR 2.0b VTN (VEN client)",
        fields={
            "vtn_id": _str_field("VTN ID", "the VTN's vtnID; answers from another VTN are refused"),
            "vtn_fingerprint": _str_field(
                "VTN certificate fingerprint",
                "AB:CD:.. (last 10 bytes of the SHA-256) of the VTN's signing certificate; every message must "
                "then be signed by it",
            ),
            "ven_id": _str_field(
                "venID", "only if the VTN assigned one out of band; else `gridaware openadr2b register`"
            ),
            "cert_file": _str_field("VEN certificate file", "PEM; for mutual TLS and message signing"),
            "key_file": _str_field(
                "VEN private key file",
                "PEM; or paste the key into Password. A passphrase goes in the extra JSON as key_passphrase (masked)",
            ),
            "ca_file": _str_field("CA file", "PEM bundle the VTN's TLS certificate must chain to"),
            "check_hostname": _str_field("Check the VTN's host name", default="true", enum=["true", "false"]),
            "poll_interval": {
                "label": "Poll interval (s)",
                "schema": {"type": ["number", "null"], "default": 10},
            },
            "opt_policy": _str_field(
                "Answer to events",
                "opt_in (default), opt_out_test_events, or opt_out (observe only)",
                default="opt_in",
                enum=["opt_in", "opt_out_test_events", "opt_out"],
            ),
            "timeout": {"label": "Read timeout (s)", "schema": {"type": ["number", "null"], "default": 10}},
            "connect_timeout": {"label": "Connect timeout (s)", "schema": {"type": ["number", "null"], "default": 5}},
        },
        hidden=["schema", "port"],
        relabeling={"host": "VTN URL", "login": "VEN name", "password": "VEN private key (PEM, optional)"},
        placeholders={"host": "https://vtn.example.com/OpenADR2/Simple/2.0b", "login": "fleet-ven-1"},
        http=False,
    ),
    _connection_type(
        "gridaware_ieee2030_5",
        "ieee2030_5",
        "IEEE20305Hook",
        "Grid: IEEE 2030.5 server (mutual TLS)",
        fields={
            "dcap_path": _str_field("DeviceCapability path", default="/dcap"),
            "cert_file": _str_field("Client certificate file", "PEM; the server knows this device by it"),
            "key_file": _str_field("Client private key file", "PEM; or paste the key into Password"),
            "ca_file": _str_field("CA file", "PEM bundle the server's TLS certificate must chain to"),
            "server_fingerprint": _str_field(
                "Server certificate SHA-256", "hex (colons allowed); a server presenting another certificate is refused"
            ),
            "end_device": _str_field("EndDevice LFDI or SFDI", "only this EndDevice of the EndDeviceList is followed"),
            "page_size": {"label": "List page size", "schema": {"type": ["integer", "null"], "default": 25}},
            "check_hostname": _str_field("Check the server's host name", default="true", enum=["true", "false"]),
            "timeout": {"label": "Read timeout (s)", "schema": {"type": ["number", "null"], "default": 10}},
            "connect_timeout": {"label": "Connect timeout (s)", "schema": {"type": ["number", "null"], "default": 5}},
        },
        hidden=["schema", "port", "login"],
        relabeling={"host": "Server URL", "password": "Client private key (PEM, optional)"},
        placeholders={"host": "https://2030-5.example.com:8443"},
        http=False,
    ),
]


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-gridaware",
        "name": "Grid-aware scheduling",
        "description": (
            "Carbon- and price-aware time and region shifting for AI and batch work: grid-signal hooks,"
            " a deferrable grid-window sensor and task decorator, and Kubernetes and AWS Batch dispatch."
        ),
        "integrations": [
            {
                "integration-name": "Grid signals",
                "external-doc-url": "https://github.com/gridaware/airflow-provider-gridaware",
                "tags": ["service"],
            },
            {
                "integration-name": "Grid events",
                "external-doc-url": "https://github.com/gridaware/airflow-provider-gridaware/blob/main/docs/events.md",
                "tags": ["protocol"],
            },
            {
                "integration-name": "Kubernetes dispatch",
                "external-doc-url": "https://github.com/gridaware/airflow-provider-gridaware/blob/main/docs/kubernetes.md",
                "tags": ["software"],
            },
            {
                "integration-name": "AWS Batch dispatch",
                "external-doc-url": "https://github.com/gridaware/airflow-provider-gridaware/blob/main/docs/batch.md",
                "tags": ["aws"],
            },
            {
                "integration-name": "Grid-event response",
                "external-doc-url": "https://github.com/gridaware/airflow-provider-gridaware/blob/main/docs/grid_event_response.md",
                "tags": ["software"],
            },
            {
                "integration-name": "Daily carbon report",
                "external-doc-url": "https://github.com/gridaware/airflow-provider-gridaware/blob/main/docs/report.md",
                "tags": ["software"],
            },
            {
                "integration-name": "Carbon ledger",
                "external-doc-url": "https://github.com/gridaware/airflow-provider-gridaware/blob/main/docs/ledger.md",
                "tags": ["software"],
            },
        ],
        "hooks": [
            {
                "integration-name": "Grid signals",
                "python-modules": [
                    f"{_PKG}.hooks.watttime",
                    f"{_PKG}.hooks.electricity_maps",
                    f"{_PKG}.hooks.ukci",
                    f"{_PKG}.hooks.entsoe",
                    f"{_PKG}.hooks.rest",
                    f"{_PKG}.hooks.replay",
                ],
            },
            {
                "integration-name": "Grid events",
                "python-modules": [
                    f"{_PKG}.hooks.openadr2b",
                    f"{_PKG}.hooks.openadr3",
                    f"{_PKG}.hooks.ieee2030_5",
                    f"{_PKG}.hooks.webhook",
                ],
            },
            {"integration-name": "Grid-event response", "python-modules": [f"{_PKG}.hooks.airflow_api"]},
            {"integration-name": "Kubernetes dispatch", "python-modules": [f"{_PKG}.hooks.kubernetes"]},
            {"integration-name": "AWS Batch dispatch", "python-modules": [f"{_PKG}.hooks.batch"]},
            # Measured power for the carbon ledger: a Prometheus URL in any connection (http is fine).
            {"integration-name": "Carbon ledger", "python-modules": [f"{_PKG}.hooks.power"]},
        ],
        "connection-types": CONNECTION_TYPES,
        "triggers": [
            {"integration-name": "Grid signals", "python-modules": [f"{_PKG}.triggers.grid_window"]},
            {
                "integration-name": "Grid events",
                "python-modules": [f"{_PKG}.triggers.grid_event", f"{_PKG}.triggers.grid_event_clear"],
            },
            {"integration-name": "Grid-event response", "python-modules": [f"{_PKG}.triggers.grid_response"]},
            {"integration-name": "Kubernetes dispatch", "python-modules": [f"{_PKG}.triggers.kubernetes"]},
            {"integration-name": "AWS Batch dispatch", "python-modules": [f"{_PKG}.triggers.batch"]},
        ],
        "operators": [
            {"integration-name": "Kubernetes dispatch", "python-modules": [f"{_PKG}.operators.kubernetes"]},
            {"integration-name": "AWS Batch dispatch", "python-modules": [f"{_PKG}.operators.batch"]},
            {"integration-name": "Grid-event response", "python-modules": [f"{_PKG}.operators.grid_event_response"]},
            {"integration-name": "Daily carbon report", "python-modules": [f"{_PKG}.operators.carbon_report"]},
        ],
        "sensors": [
            {"integration-name": "Grid signals", "python-modules": [f"{_PKG}.sensors.grid_window"]},
        ],
        "extra-links": [f"{_PKG}.links.grid_decision.GridDecisionLink"],
        "task-decorators": [
            {"name": "gridaware", "class-name": f"{_PKG}.decorators.gridaware.gridaware_task"},
        ],
        "config": {
            "gridaware": {
                "description": "The provider's store (forecast archive; see docs/store.md).",
                "options": {
                    "store_conn_id": {
                        "description": "Airflow connection (postgres or sqlite) of the store; empty: "
                        "$GRIDAWARE_STORE_URL, else sqlite:///$AIRFLOW_HOME/gridaware.db. "
                        "GRIDAWARE_STORE_URL, when set, takes precedence over this option.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "gridaware_store",
                        "default": "",
                    },
                    "archive": {
                        "description": "Record every forecast and actual series the grid signal hooks return "
                        "(the environment variable GRIDAWARE_ARCHIVE=0 also switches it off).",
                        "version_added": "0.1.0",
                        "type": "boolean",
                        "example": "False",
                        "default": "True",
                    },
                    "response_policy": {
                        "description": "The grid-event response policy as JSON (docs/grid_event_response.md): "
                        "which priority class pauses for which event. Empty: the defaults (critical keeps "
                        "running, flexible checkpoints, batch stops, from SIMPLE level 1 and for capacity limits).",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": '{"simple_min_level": {"flexible": 2}, "price_thresholds": {"EUR": 300}}',
                        "default": "",
                    },
                    "ledger_reader": {
                        "description": "module:callable returning the ledger's reader (LedgerReader) for the store "
                        "URL it is given; read by the Grid page, gridaware flex and SustainabilitySloOperator.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "airflow_provider_gridaware.store.ledger:LedgerStore",
                        "default": "",
                    },
                    "ui_zones": {
                        "description": "Zones the Grid page always shows, as comma-separated conn_id:zone pairs "
                        "(zones waiting tasks read are shown too).",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "gridaware_ukci_default:GB, gridaware_electricitymaps_default:DE",
                        "default": "",
                    },
                    "report_location": {
                        "description": "Where the daily carbon reports live, one folder per UTC day: the default "
                        "folder of DailyCarbonReportOperator and the location the Grid page lists and serves them "
                        "from (a file:// URL or path, or an ObjectStoragePath URL). {airflow_home} is filled in. "
                        "Empty: file://$AIRFLOW_HOME/gridaware/reports.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "file:///srv/airflow/carbon-reports",
                        "default": "",
                    },
                    "report_conn_id": {
                        "description": "The storage connection of report_location (aws_default for s3:// ...).",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "aws_default",
                        "default": "",
                    },
                    "slos": {
                        "description": "Sustainability SLOs the Grid page and the daily report show: a JSON list of "
                        "{name, metric (mean_intensity | kg_per_month | clean_share), target, dag_ids or tags, "
                        "period_days, intensity_kind, min_runs}.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": '[{"name": "ml", "metric": "clean_share", "target": 0.8, "tags": ["ml"]}]',
                        "default": "",
                    },
                },
            },
        },
    }
