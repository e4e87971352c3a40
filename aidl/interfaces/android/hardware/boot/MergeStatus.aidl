// Virtual A/B snapshot merge state, as the boot-control HAL reports it.
package android.hardware.boot;

@Backing(type="int")
enum MergeStatus {
    NONE,
    UNKNOWN,
    SNAPSHOTTED,
    MERGING,
    CANCELLED,
}
