/** The CLI's version (package.json's), written into image metadata and reports. */
export const VERSION = '0.1.0';
