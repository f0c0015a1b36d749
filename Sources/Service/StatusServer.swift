// The scheduler's HTTP listener (off unless `scheduler.listen` is set): /metrics for
// Prometheus, /healthz (the process answers) and /readyz (inventory loaded, catalog open).
// These three are read-only and answer without a login; the REST API (APIRoutes, under
// /api/v1) mounts on the same router with tokens, roles and the audit trail.
import Foundation
import Hummingbird
import Logging
import Scheduling
import ServiceLifecycle

package final class StatusServer: Sendable {
    private let group: ServiceGroup

    /// `onRunning` is called once the socket is bound and accepting.
    package init(
        host: String, port: Int, scheduler: Scheduler, logger: Logger, behindTLSProxy: Bool = false, openAPI: String? = nil,
        onRunning: @escaping @Sendable () async -> Void = {}
    ) {
        let router = Router()
        APIRoutes.mount(on: router, scheduler: scheduler, listenHost: host, behindTLSProxy: behindTLSProxy, openAPI: openAPI)
        router.get("healthz") { _, _ -> String in "ok\n" }
        router.get("readyz") { _, _ -> Response in
            let ready = await scheduler.ready()
            return Response(
                status: ready ? .ok : .serviceUnavailable,
                body: .init(byteBuffer: .init(string: ready ? "ready\n" : "the run catalog does not answer\n")))
        }
        router.get("metrics") { _, _ -> Response in
            let text = MetricsExporter.render(await scheduler.metrics())
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: .init(string: text)))
        }
        // The server's own lines are events too (`http`), in the scheduler's format.
        var http = logger
        http[metadataKey: "event"] = "http"
        let app = Application(
            router: router, configuration: .init(address: .hostname(host, port: port), serverName: "stowage"), onServerRunning: { _ in await onRunning() },
            logger: http)
        group = ServiceGroup(services: [app], gracefulShutdownSignals: [], cancellationSignals: [], logger: http)
    }

    /// Serves until `shutdown()`.
    package func run() async throws { try await group.run() }

    /// Stops accepting, lets requests underway finish, then `run()` returns.
    package func shutdown() async { await group.triggerGracefulShutdown() }
}
