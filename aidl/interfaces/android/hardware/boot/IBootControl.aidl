// The Android boot-control HAL (android.hardware.boot, stable AIDL version 1): the methods in
// the order of the frozen interface, which fixes their transaction codes.
package android.hardware.boot;

import android.hardware.boot.MergeStatus;

interface IBootControl {
    int getActiveBootSlot();
    int getCurrentSlot();
    int getNumberSlots();
    MergeStatus getSnapshotMergeStatus();
    String getSuffix(in int slot);
    boolean isSlotBootable(in int slot);
    boolean isSlotMarkedSuccessful(in int slot);
    void markBootSuccessful();
    void setActiveBootSlot(in int slot);
    void setSlotAsUnbootable(in int slot);
    void setSnapshotMergeStatus(in MergeStatus status);
}
