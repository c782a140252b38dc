//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

/// Producing a whole encoded record, as the transports do.
extension KafkaProducer {
    /// ``produce(topic:partition:key:value:headers:onDelivery:)`` for `record`; `false` when the queue is full.
    func produce(_ record: KafkaRecordModel, onDelivery: @escaping DeliveryWaiter) throws -> Bool {
        try produce(topic: record.topic, partition: record.partition, key: record.key, value: record.value,
                    headers: record.producerHeaders, onDelivery: onDelivery)
    }

    /// ``produceWhenRoom(topic:partition:key:value:headers:onDelivery:until:)`` for `record`.
    func produceWhenRoom(
        _ record: KafkaRecordModel,
        onDelivery: DeliveryWaiter? = nil,
        until deadline: ContinuousClock.Instant? = nil
    ) async throws {
        try await produceWhenRoom(topic: record.topic, partition: record.partition, key: record.key,
                                  value: record.value, headers: record.producerHeaders, onDelivery: onDelivery,
                                  until: deadline)
    }

    /// ``send(topic:partition:key:value:headers:)`` for `record`.
    func send(_ record: KafkaRecordModel) async throws -> KafkaDeliveryReport {
        try await send(topic: record.topic, partition: record.partition, key: record.key, value: record.value,
                       headers: record.producerHeaders)
    }
}
