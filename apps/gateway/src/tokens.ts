// Injection tokens of the gateway's providers.
export const CONTROL_PLANE = Symbol('ControlPlane');
export const TOKEN_SERVICE = Symbol('TokenService');
export const GATEWAY_CONFIG = Symbol('GatewayConfig');
export const METRICS = Symbol('Metrics');
export const LOGGER = Symbol('Logger');
export const BUS = Symbol('Bus');
export const TRACKING_SECRET = Symbol('TrackingSecret');
export const TRACKING_EVENTS = Symbol('TrackingEvents');
export const KPI_STORE = Symbol('KpiStore');
export const WEBHOOK_SECRET = Symbol('WebhookSecret');
export const KPI_PIPELINE = Symbol('KpiPipeline');
export const OPENAPI_DOCUMENT = Symbol('OpenApiDocument');
