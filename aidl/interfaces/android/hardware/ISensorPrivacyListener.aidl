// A listener the sensor-privacy service calls back; declared for the manager's methods, not
// implemented here (the Privacy Mode daemon reads the state back instead).
package android.hardware;

oneway interface ISensorPrivacyListener {
    void onSensorPrivacyChanged(int toggleType, int sensor, boolean enabled);
}
